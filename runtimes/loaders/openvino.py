"""OpenVINO loader: an IR (``model.xml`` + ``model.bin``) compiled for CPU.

Each worker thread keeps its own infer request (a compiled model is shared, a request is not
thread-safe). Inputs and outputs are named by their first tensor name; the IR's element types
and partial shapes are what ``/metadata`` reports.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders.base import DEFAULT_SIGNATURE, Signature, TensorSpec
from runtimes.loaders.tensor import TensorModel

# OpenVINO element type names -> TF dtype names.
OV_DTYPES = {
    "f32": "DT_FLOAT",
    "f64": "DT_DOUBLE",
    "f16": "DT_HALF",
    "i8": "DT_INT8",
    "i16": "DT_INT16",
    "i32": "DT_INT32",
    "i64": "DT_INT64",
    "u8": "DT_UINT8",
    "u16": "DT_UINT16",
    "u32": "DT_UINT32",
    "u64": "DT_UINT64",
    "boolean": "DT_BOOL",
    "string": "DT_STRING",
}


def find_ir(path: Path) -> Path:
    xmls = sorted(p for p in path.glob("*.xml") if p.with_suffix(".bin").is_file())
    if not xmls:
        raise ModelLoadError(f"no OpenVINO IR in {path}: need a .xml with a .bin of the same name")
    if len(xmls) > 1:
        raise ModelLoadError(f"{path} holds several IRs ({', '.join(p.name for p in xmls)})")
    return xmls[0]


def _spec(port: Any, fallback: str) -> TensorSpec:
    names = sorted(port.get_names())
    name = port.get_any_name() if names else fallback
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic:
        shape = None
    else:
        shape = tuple(d.get_length() if d.is_static else None for d in pshape)
    dtype = OV_DTYPES.get(port.get_element_type().get_type_name(), "DT_FLOAT")
    return TensorSpec(name, dtype, shape, name)


class OpenVinoModel(TensorModel):
    """An OpenVINO IR compiled for the CPU plugin."""

    runtime = "openvino"

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(path, threads)
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelLoadError(f"the OpenVINO runtime is not installed: {exc}") from None
        xml = find_ir(path)
        try:
            core = ov.Core()
            model = core.read_model(str(xml))
            # f32 precision: on CPUs with AMX/AVX512-BF16 the plugin would otherwise run in
            # bf16 and answer ~1e-3 away from the framework the model was trained in.
            config = {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32",
            }
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message
            raise ModelLoadError(f"OpenVINO cannot load {xml.name}: {exc}") from None
        inputs = [_spec(p, f"input_{i}") for i, p in enumerate(self.compiled.inputs)]
        outputs = [_spec(p, f"output_{i}") for i, p in enumerate(self.compiled.outputs)]
        self._output_ports = list(self.compiled.outputs)
        self.signatures = {
            DEFAULT_SIGNATURE: Signature(
                inputs={s.name: s for s in inputs}, outputs={s.name: s for s in outputs}
            )
        }
        self._local = threading.local()

    def _request(self) -> Any:
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sig = self.signatures[signature]
        req = self._request()
        try:
            result = req.infer({name: feeds[name] for name in sig.inputs})
        except RuntimeError as exc:  # shape/type the compiled model cannot take
            raise BadRequest(f"OpenVINO rejected the input: {str(exc).splitlines()[0]}") from None
        names = list(sig.outputs)
        return {
            names[i]: np.array(result[port], copy=True) for i, port in enumerate(self._output_ports)
        }

    def warmup(self) -> None:
        sig = self.signatures[DEFAULT_SIGNATURE]
        # A model whose zero input is invalid has still been compiled and set up.
        with contextlib.suppress(BadRequest):
            self.run(DEFAULT_SIGNATURE, self.example_feeds(sig))
