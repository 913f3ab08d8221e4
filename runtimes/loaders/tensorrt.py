"""TensorRT loader: a serialized engine (``.plan`` / ``.engine``) run on a CUDA GPU.

Written against TensorRT's documented Python API (``Runtime.deserialize_cuda_engine``, the
``num_io_tensors`` / ``get_tensor_*`` name-based I/O of TensorRT 8.5+, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with device memory from cuda-python's ``cudart``.
UNVERIFIED: the machines this project is built on have neither TensorRT nor a GPU, so only the
refusal and the helpers in :mod:`runtimes.loaders.tensorrt_bindings` are tested.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import ModelLoadError
from runtimes.loaders.base import DEFAULT_SIGNATURE
from runtimes.loaders.tensor import TensorModel
from runtimes.loaders.tensorrt_bindings import (
    Binding,
    cast_input,
    check_input_shape,
    join_outputs,
    max_batch,
    signature_of,
    split_batch,
)

ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def missing_requirements() -> list[str]:
    """What stops this machine from running engines: TensorRT, CUDA bindings, a GPU."""
    missing = []
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        missing.append("TensorRT is not installed (the tensorrt Python package from NVIDIA)")
    try:
        cudart = _import_cudart()
    except ImportError:
        gpu = Path("/proc/driver/nvidia/gpus").is_dir() and any(
            Path("/proc/driver/nvidia/gpus").iterdir()
        )
        missing.append(
            "cuda-python is not installed" if gpu else "no CUDA GPU is visible to this container"
        )
        return missing
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        missing.append("no CUDA GPU is visible to this container")
    return missing


def find_engine(path: Path) -> Path:
    engines = sorted(p for p in path.iterdir() if p.suffix in ENGINE_SUFFIXES)
    if len(engines) != 1:
        raise ModelLoadError(
            f"{path} must hold exactly one serialized engine ({', '.join(ENGINE_SUFFIXES)}); "
            f"found {len(engines)}"
        )
    return engines[0]


def _check(result: Any) -> Any:
    """cuda-python returns (error, *values); raise on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class TensorRtModel(TensorModel):
    """A TensorRT engine; one execution context and CUDA stream per worker thread."""

    runtime = "tensorrt"

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(path, threads)
        missing = missing_requirements()
        if missing:
            raise ModelLoadError(
                "the TensorRT runtime cannot start on this machine: " + "; ".join(missing)
            )
        import tensorrt as trt

        self.trt = trt
        self.cudart = _import_cudart()
        engine_file = find_engine(path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_file.read_bytes())
        if self.engine is None:
            raise ModelLoadError(
                f"TensorRT cannot deserialize {engine_file.name} (built for another TensorRT "
                "version or GPU?)"
            )
        self.bindings = [self._binding(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [b for b in self.bindings if b.is_input]
        self.outputs = [b for b in self.bindings if not b.is_input]
        self.batch_limit = max_batch(self.inputs)
        self.signatures = signature_of(self.bindings)
        self._local = threading.local()

    def _binding(self, index: int) -> Binding:
        trt, engine = self.trt, self.engine
        name = engine.get_tensor_name(index)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = engine.get_tensor_dtype(name).name
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        lo = hi = None
        if is_input and any(d < 0 for d in shape):
            lo_s, _, hi_s = engine.get_tensor_profile_shape(name, 0)
            lo, hi = tuple(int(d) for d in lo_s), tuple(int(d) for d in hi_s)
        return Binding(name, is_input, dtype, shape, lo, hi)

    def _context(self) -> tuple[Any, Any]:
        local = self._local
        if getattr(local, "context", None) is None:
            local.context = self.engine.create_execution_context()
            local.stream = _check(self.cudart.cudaStreamCreate())
        return local.context, local.stream

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for binding in self.inputs:
            check_input_shape(binding, feeds[binding.name].shape)
        chunks = [self._run_once(chunk) for chunk in split_batch(feeds, self.batch_limit)]
        return join_outputs(chunks)

    def _run_once(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        context, stream = self._context()
        allocations = []
        try:
            for binding in self.inputs:
                host = cast_input(binding, feeds[binding.name])
                context.set_input_shape(binding.name, host.shape)
                device = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                allocations.append(device)
                _check(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, h2d, stream))
                context.set_tensor_address(binding.name, int(device))
            results = {}
            for binding in self.outputs:
                shape = tuple(context.get_tensor_shape(binding.name))
                host = np.empty(shape, dtype=binding.numpy_dtype)
                device = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                allocations.append(device)
                context.set_tensor_address(binding.name, int(device))
                results[binding.name] = (host, device)
            if not context.execute_async_v3(stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            for host, device in results.values():
                _check(cudart.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, d2h, stream))
            _check(cudart.cudaStreamSynchronize(stream))
            return {name: host for name, (host, _) in results.items()}
        finally:
            for device in allocations:
                cudart.cudaFree(device)

    def warmup(self) -> None:
        feeds = self.example_feeds(self.signatures[DEFAULT_SIGNATURE])
        self.run(DEFAULT_SIGNATURE, feeds)
