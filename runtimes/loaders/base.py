"""What every loader provides: signatures for ``/metadata`` and the calls behind the REST verbs.

Two shapes of model exist. Tensor models (SavedModel, OpenVINO IR, TensorRT engines) take named
arrays; :class:`TensorModel` turns TF-Serving's row and columnar JSON into arrays and back, and a
loader only implements :meth:`TensorModel.run`. Record models (PMML, Angel) score one record per
instance; :class:`RecordModel` handles the JSON and a loader implements :meth:`RecordModel.score`.
``run`` and ``score`` are the one seam where model calls happen (adaptive batching goes there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import BadRequest

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"

# TF DataType enum names <-> NumPy; the names are what TF-Serving prints in metadata.
DTYPES: dict[str, Any] = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
    "DT_STRING": object,
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, TF dtype name, shape (None dims unknown; None = any rank)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None
    tensor_name: str = ""

    @property
    def is_string(self) -> bool:
        return self.dtype == "DT_STRING"

    def numpy_dtype(self) -> Any:
        return DTYPES.get(self.dtype, np.float32)

    def to_json(self) -> dict[str, Any]:
        """The ``TensorInfo`` message as TF-Serving prints it (default fields included)."""
        if self.shape is None:
            shape: dict[str, Any] = {"dim": [], "unknown_rank": True}
        else:
            dims = [{"size": str(-1 if d is None else d), "name": ""} for d in self.shape]
            shape = {"dim": dims, "unknown_rank": False}
        return {"dtype": self.dtype, "tensor_shape": shape, "name": self.tensor_name or self.name}


@dataclass
class Signature:
    """A named signature: its inputs and outputs in order, and its TF-Serving method name."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    method_name: str = PREDICT_METHOD
    defaults: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": {k: v.to_json() for k, v in self.inputs.items()},
            "outputs": {k: v.to_json() for k, v in self.outputs.items()},
            "method_name": self.method_name,
            "defaults": self.defaults,
        }


class Model(ABC):
    """A loaded model version, ready to answer the REST verbs (all called from worker threads)."""

    runtime: str = ""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.threads = threads
        self.signatures: dict[str, Signature] = {}

    def signature(self, name: str | None) -> tuple[str, Signature]:
        """Look up a signature by name (``serving_default`` when absent); 400 if unknown."""
        key = name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            if name is None and len(self.signatures) == 1:
                key = next(iter(self.signatures))
            else:
                raise BadRequest(
                    f'Serving signature name: "{key}" not found in signature def '
                    f"(available: {', '.join(sorted(self.signatures))})"
                )
        return key, self.signatures[key]

    def metadata(self) -> dict[str, Any]:
        """``metadata`` part of the ``/metadata`` answer (TF-Serving's SignatureDefMap)."""
        return {
            "signature_def": {"signature_def": {k: v.to_json() for k, v in self.signatures.items()}}
        }

    @abstractmethod
    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer a ``:predict`` body (already parsed JSON object)."""

    def classify(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BadRequest(f"the {self.runtime} runtime does not support :classify for this model")

    def regress(self, body: dict[str, Any]) -> dict[str, Any]:
        raise BadRequest(f"the {self.runtime} runtime does not support :regress for this model")

    @abstractmethod
    def warmup(self) -> None:
        """Run the model once so the first real request does not pay for lazy setup."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""
