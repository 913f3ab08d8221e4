"""The parts of the TensorRT runtime that need neither TensorRT nor a GPU.

Binding descriptions (name, direction, dtype, shape, optimisation-profile range), the
signature ``/metadata`` shows, shape checks against the profile, casting inputs to the
engine's dtypes, and splitting a batch larger than the profile allows into chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtimes.errors import BadRequest
from runtimes.loaders.base import DEFAULT_SIGNATURE, Signature, TensorSpec

# tensorrt.DataType member names -> (NumPy dtype, TF dtype name).
TRT_DTYPES: dict[str, tuple[Any, str]] = {
    "FLOAT": (np.float32, "DT_FLOAT"),
    "HALF": (np.float16, "DT_HALF"),
    "INT8": (np.int8, "DT_INT8"),
    "INT32": (np.int32, "DT_INT32"),
    "INT64": (np.int64, "DT_INT64"),
    "BOOL": (np.bool_, "DT_BOOL"),
    "UINT8": (np.uint8, "DT_UINT8"),
}


@dataclass(frozen=True)
class Binding:
    """One engine I/O tensor. ``shape`` uses -1 for dynamic dims; inputs carry the profile."""

    name: str
    is_input: bool
    dtype: str
    shape: tuple[int, ...]
    min_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None

    @property
    def numpy_dtype(self) -> Any:
        if self.dtype not in TRT_DTYPES:
            raise ValueError(f"binding {self.name}: TensorRT dtype {self.dtype} is not supported")
        return TRT_DTYPES[self.dtype][0]

    def spec(self) -> TensorSpec:
        tf_dtype = TRT_DTYPES.get(self.dtype, (None, "DT_INVALID"))[1]
        dims = tuple(None if d < 0 else int(d) for d in self.shape)
        return TensorSpec(self.name, tf_dtype, dims, self.name)


def signature_of(bindings: list[Binding]) -> dict[str, Signature]:
    """One ``serving_default`` signature: inputs and outputs in engine order."""
    return {
        DEFAULT_SIGNATURE: Signature(
            inputs={b.name: b.spec() for b in bindings if b.is_input},
            outputs={b.name: b.spec() for b in bindings if not b.is_input},
        )
    }


def check_input_shape(binding: Binding, shape: tuple[int, ...]) -> None:
    """400 unless ``shape`` has the binding's rank, its static dims and fits the profile."""
    if len(shape) != len(binding.shape):
        raise BadRequest(
            f'input "{binding.name}" has rank {len(shape)}, the engine expects '
            f"{len(binding.shape)} ({list(binding.shape)})"
        )
    for axis, (want, got) in enumerate(zip(binding.shape, shape, strict=True)):
        if want >= 0 and want != got:
            raise BadRequest(
                f'input "{binding.name}" dimension {axis} is {got}, the engine expects {want}'
            )
    lo, hi = binding.min_shape, binding.max_shape
    if lo is not None and hi is not None:
        # Dimension 0 may exceed the profile: the batch is then split (see split_batch).
        for axis, (got, a, b) in enumerate(zip(shape, lo, hi, strict=True)):
            if axis > 0 and not a <= got <= b:
                raise BadRequest(
                    f'input "{binding.name}" dimension {axis} is {got}; the engine\'s '
                    f"optimisation profile allows {a}..{b}"
                )


def cast_input(binding: Binding, arr: np.ndarray) -> np.ndarray:
    """The array in the engine's dtype, C-contiguous (what a device copy needs)."""
    if arr.dtype == object:
        raise BadRequest(f'input "{binding.name}" is numeric; strings are not accepted')
    return np.ascontiguousarray(arr, dtype=binding.numpy_dtype)


def max_batch(inputs: list[Binding]) -> int | None:
    """The largest dim-0 every input's profile allows (None: no limit known)."""
    limits = [b.max_shape[0] for b in inputs if b.max_shape is not None and b.shape[0] < 0]
    return min(limits) if limits else None


def split_batch(feeds: dict[str, np.ndarray], limit: int | None) -> Iterator[dict[str, np.ndarray]]:
    """Chunks of at most ``limit`` rows (all inputs share dim 0), in order."""
    sizes = {arr.shape[0] for arr in feeds.values() if arr.ndim}
    if len(sizes) > 1:
        raise BadRequest(f"inputs have different batch sizes {sorted(sizes)}")
    total = sizes.pop() if sizes else 1
    if limit is None or total <= limit:
        yield feeds
        return
    for start in range(0, total, limit):
        yield {name: arr[start : start + limit] for name, arr in feeds.items()}


def join_outputs(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate per-chunk outputs along dim 0, keeping output order."""
    if len(chunks) == 1:
        return chunks[0]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
