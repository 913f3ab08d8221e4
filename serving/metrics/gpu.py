"""GPU utilisation through NVML (``nvidia-ml-py``), for instances that hold GPUs.

The poller asks the backend which device ids an instance was given
(``Backend.gpu_devices``: Docker's device request, else the container's
``NVIDIA_VISIBLE_DEVICES``) and reads each device's utilisation (the percentage of the last
sample period a kernel ran, ``nvmlDeviceGetUtilizationRates().gpu``); the instance's value is
the mean over its devices. NVML reads the GPUs of the machine the poller runs on, so this is
right for nodes on the portal's own host (the embedded default and a local Docker engine); a
remote node's GPUs read as "not available" (None) until a per-node agent exists (ROADMAP 5).
Without a driver or without the package, every GPU value is None — never an error.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, object] = {"ready": None}


def _nvml():
    """The initialised ``pynvml`` module, or None where NVML is not available."""
    with _lock:
        if _state["ready"] is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _state["module"] = pynvml
                _state["ready"] = True
            except Exception as exc:  # no package, no driver, no device
                log.info("NVML is not available (%s): GPU utilisation is not reported", exc)
                _state["ready"] = False
        return _state.get("module") if _state["ready"] else None


def device_count() -> int:
    nvml = _nvml()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def utilization(devices: list[str]) -> float | None:
    """Mean utilisation (percent) of the devices (indexes or ``GPU-…`` UUIDs); None when
    NVML or any of the devices cannot be read."""
    nvml = _nvml()
    if nvml is None or not devices:
        return None
    values = []
    try:
        for device in devices:
            if device.isdigit():
                handle = nvml.nvmlDeviceGetHandleByIndex(int(device))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(device)
            values.append(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
    except Exception as exc:
        log.warning("cannot read GPU utilisation of %s: %s", devices, exc)
        return None
    return sum(values) / len(values)
