"""The scale harness: a backend whose instances start and stop instantly, held in memory.

**Not a runtime backend.** Nothing runs: ``start`` records an instance as running at a made-up
address and ``health`` answers ``AVAILABLE`` for every running one. It exists so the control
plane (reconciler, route publication, list pages) can be measured and its query counts pinned
at 10,000 services without 10,000 processes — ``bench/controlplane_bench.py`` and
``tests/serving/test_sv_scale.py``. ``Node.backend`` never names it and no setting selects it:
the harness installs it explicitly for every node with :func:`serving.backends.override`, in
its own process (the state is this process's memory, so a worker elsewhere would not see it).

It keeps the interface's contract where the reconciler relies on it: ``list(labels)`` filters
by labels (indexed by service, so a per-service listing costs what it costs an engine with a
label filter), ``stop`` returns the last status with its finish time and removes the instance,
``inspect`` of an unknown id is ``MISSING``. :meth:`SimulatedBackend.crash` marks one exited, as
a container that died would be.
"""

from __future__ import annotations

import datetime as dt
import threading

from serving.backends.base import (
    EXITED,
    LABEL_SERVICE,
    MISSING,
    RUNNING,
    Backend,
    InstanceSpec,
    InstanceStats,
    InstanceStatus,
)

_lock = threading.Lock()


class SimulatedBackend(Backend):
    """One simulated node (see the module docstring)."""

    name = "simulated"
    enforces_limits = False

    def __init__(self, *, node: str):
        super().__init__(node=node)
        self._by_id: dict[str, InstanceStatus] = {}
        self._by_service: dict[str, dict[str, InstanceStatus]] = {}
        self._port = 20000

    # --- the harness's own helpers ------------------------------------------------------------
    def add(self, spec: InstanceSpec, *, started_at: dt.datetime | None = None) -> InstanceStatus:
        """Record an instance as running (seeding a world without a reconcile pass)."""
        with _lock:
            self._port += 1
            status = InstanceStatus(
                instance_id=spec.instance_id,
                service_id=spec.service_id,
                tenant_id=str(spec.tenant_id),
                backend_id=f"sim-{self.node}-{self._port}",
                state=RUNNING,
                address=f"http://{self.node}.sim:{self._port}",
                started_at=started_at or dt.datetime.now(dt.UTC),
                labels=spec.labels(self.node),
            )
            self._by_id[spec.instance_id] = status
            self._by_service.setdefault(spec.service_id, {})[spec.instance_id] = status
            return status

    def crash(self, instance_id: str, *, exit_code: int = 137) -> None:
        with _lock:
            status = self._by_id[instance_id]
            status.state, status.exit_code = EXITED, exit_code
            status.finished_at = dt.datetime.now(dt.UTC)
            status.message = f"exited with code {exit_code}"

    # --- the Backend interface ----------------------------------------------------------------
    def start(self, spec: InstanceSpec, model_dir: str) -> InstanceStatus:
        return self.add(spec)

    def stop(self, instance_id: str, *, grace: float = 10.0) -> InstanceStatus | None:
        with _lock:
            status = self._by_id.pop(instance_id, None)
            if status is None:
                return None
            self._by_service.get(status.service_id, {}).pop(instance_id, None)
            if status.state == RUNNING:
                status.state = EXITED
                status.finished_at = dt.datetime.now(dt.UTC)
            return status

    def inspect(self, instance_id: str) -> InstanceStatus:
        status = self._by_id.get(instance_id)
        if status is None:
            return InstanceStatus(instance_id, "", "", "", MISSING)
        return status

    def list(self, labels: dict[str, str] | None = None) -> list[InstanceStatus]:
        labels = labels or {}
        service = labels.get(LABEL_SERVICE)
        with _lock:
            pool = self._by_service.get(service, {}) if service else self._by_id
            found = list(pool.values())
        return [s for s in found if all(s.labels.get(k) == v for k, v in labels.items())]

    def stats(self, instance_id: str) -> InstanceStats:
        return InstanceStats(cpu_percent=None, memory_bytes=None, memory_limit_bytes=None)

    def logs(self, instance_id: str, *, tail: int = 100) -> str:
        return ""

    def health(self, status: InstanceStatus, *, timeout: float = 2.0) -> bool:
        return status.state == RUNNING and bool(status.address)
