"""JSON values <-> NumPy arrays, with TF-Serving's rules for binary data and ragged input.

TF-Serving's REST API encodes binary strings as ``{"b64": "..."}``; on output, string tensors
whose name ends in ``_bytes`` are always base64 objects, others are UTF-8 text (base64 objects
when they are not valid UTF-8, so no answer can fail to encode).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from runtimes.errors import BadRequest

# NumPy's own limit on dimensions; string tensors are flattened by hand, so check it here.
MAX_DIMS = 64


def is_b64(value: Any) -> bool:
    """True for TF-Serving's binary value object ``{"b64": "..."}``."""
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def decode_b64(value: dict[str, Any]) -> bytes:
    data = value["b64"]
    if not isinstance(data, str):
        raise BadRequest('the value of a "b64" object must be a base64 string')
    try:
        # What ``base64.b64decode(data, validate=True)`` accepts, without its regex pass over
        # the string first: about half the cost of decoding a JPEG on the event loop.
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"invalid base64 value: {exc}") from None


def _string_leaves(value: Any, shape: list[int], depth: int, out: list[bytes]) -> None:
    """Flatten a nested list of strings / b64 objects, recording and checking its shape."""
    if isinstance(value, list):
        if depth >= MAX_DIMS:
            raise BadRequest(f"a string tensor has at most {MAX_DIMS} dimensions")
        if depth == len(shape):
            if out:  # a list where earlier rows had a scalar
                raise BadRequest("ragged input: rows have different shapes")
            shape.append(len(value))
        elif shape[depth] != len(value):
            raise BadRequest("ragged input: rows have different shapes")
        for item in value:
            _string_leaves(item, shape, depth + 1, out)
        return
    if depth != len(shape):
        raise BadRequest("ragged input: rows have different shapes")
    if isinstance(value, str):
        out.append(value.encode("utf-8"))
    elif is_b64(value):
        out.append(decode_b64(value))
    else:
        raise BadRequest(f'expected a string or {{"b64": ...}} value, got {type(value).__name__}')


def to_array(value: Any, dtype: Any, name: str) -> np.ndarray:
    """Convert a JSON value to an array of ``dtype``; 400 for ragged or mistyped values."""
    if dtype is object:
        shape: list[int] = []
        leaves: list[bytes] = []
        _string_leaves(value, shape, 0, leaves)
        arr = np.empty(len(leaves), dtype=object)
        arr[:] = leaves
        return arr.reshape(shape)
    try:
        arr = np.asarray(value, dtype=dtype)
    except ValueError as exc:
        text = str(exc)
        if "inhomogeneous" in text or "sequence" in text:
            raise BadRequest(f'ragged input for "{name}": rows have different shapes') from None
        raise BadRequest(f'input "{name}" has a value of the wrong type: {text}') from None
    except TypeError as exc:
        raise BadRequest(f'input "{name}" has a value of the wrong type: {exc}') from None
    return arr


def _string_to_json(value: bytes, as_b64: bool) -> Any:
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode("ascii")}


def to_json(arr: Any, name: str) -> Any:
    """An output array (or one row of it) as a JSON-ready value (orjson takes NumPy directly)."""
    if isinstance(arr, bytes):
        return _string_to_json(arr, name.endswith("_bytes"))
    if isinstance(arr, np.ndarray):
        if arr.dtype == object or arr.dtype.kind in "SU":
            as_b64 = name.endswith("_bytes")
            flat = [
                _string_to_json(v if isinstance(v, bytes) else str(v).encode(), as_b64)
                for v in arr.reshape(-1)
            ]
            out = np.empty(len(flat), dtype=object)
            out[:] = flat
            return out.reshape(arr.shape).tolist()
        if arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
            return np.ascontiguousarray(arr, dtype=np.float32)
        return np.ascontiguousarray(arr)
    if isinstance(arr, np.generic):
        return arr
    return arr
