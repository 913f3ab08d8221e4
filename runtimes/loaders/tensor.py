"""TF-Serving's ``:predict`` JSON for models that take and return named tensors."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from runtimes.errors import BadRequest
from runtimes.jsonvalues import is_b64, to_array, to_json
from runtimes.loaders.base import Model, Signature, TensorSpec


def check_shape(arr: np.ndarray, spec: TensorSpec) -> None:
    """400 unless ``arr`` fits the declared shape (unknown dims match anything)."""
    if spec.shape is None:
        return
    if arr.ndim != len(spec.shape) or any(
        want is not None and want != got for want, got in zip(spec.shape, arr.shape, strict=True)
    ):
        want_text = "[" + ",".join("-1" if d is None else str(d) for d in spec.shape) + "]"
        raise BadRequest(
            f'input "{spec.name}" has shape {list(arr.shape)}, the signature expects {want_text}'
        )


def _one_input(sig: Signature) -> TensorSpec | None:
    return next(iter(sig.inputs.values())) if len(sig.inputs) == 1 else None


def rows_to_feeds(instances: Any, sig: Signature) -> tuple[dict[str, np.ndarray], int]:
    """Row format: a list of instances -> one batched array per input (dim 0 = instance)."""
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    single = _one_input(sig)
    columns: dict[str, list[Any]] = {name: [] for name in sig.inputs}
    for i, inst in enumerate(instances):
        if isinstance(inst, dict) and not is_b64(inst):
            unknown = set(inst) - set(sig.inputs)
            if unknown:
                raise BadRequest(f"instance {i} has unknown input(s): {', '.join(sorted(unknown))}")
            missing = set(sig.inputs) - set(inst)
            if missing:
                raise BadRequest(f"instance {i} is missing input(s): {', '.join(sorted(missing))}")
            for name in sig.inputs:
                columns[name].append(inst[name])
        elif single is not None:
            columns[single.name].append(inst)
        else:
            raise BadRequest(
                "this signature has several inputs: each instance must be an object "
                f"with keys {', '.join(sig.inputs)}"
            )
    feeds = {}
    for name, spec in sig.inputs.items():
        arr = to_array(columns[name], spec.numpy_dtype(), name)
        check_shape(arr, spec)
        feeds[name] = arr
    return feeds, len(instances)


def columns_to_feeds(inputs: Any, sig: Signature) -> dict[str, np.ndarray]:
    """Columnar format: named inputs (or a single bare input) -> arrays, no batch rules."""
    single = _one_input(sig)
    if isinstance(inputs, dict) and not is_b64(inputs):  # an object is always name -> value
        named = inputs
    elif single is not None:
        named = {single.name: inputs}
    else:
        raise BadRequest(
            f'this signature has several inputs: "inputs" must be an object with keys '
            f"{', '.join(sig.inputs)}"
        )
    unknown = set(named) - set(sig.inputs)
    if unknown:
        raise BadRequest(f"unknown input(s): {', '.join(sorted(unknown))}")
    missing = set(sig.inputs) - set(named)
    if missing:
        raise BadRequest(f"missing input(s): {', '.join(sorted(missing))}")
    feeds = {}
    for name, spec in sig.inputs.items():
        arr = to_array(named[name], spec.numpy_dtype(), name)
        check_shape(arr, spec)
        feeds[name] = arr
    return feeds


def outputs_to_rows(outputs: dict[str, np.ndarray], batch: int) -> list[Any]:
    """One output -> a list of values; several -> a list of objects keyed by output name."""
    for name, arr in outputs.items():
        if np.ndim(arr) == 0 or np.shape(arr)[0] != batch:
            raise BadRequest(
                f'output "{name}" has shape {list(np.shape(arr))}: the row format needs every '
                f'output to have {batch} rows; use the columnar "inputs" format'
            )
    if len(outputs) == 1:
        ((name, arr),) = outputs.items()
        return [to_json(arr[i], name) for i in range(batch)]
    return [{name: to_json(arr[i], name) for name, arr in outputs.items()} for i in range(batch)]


def outputs_to_columns(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        ((name, arr),) = outputs.items()
        return to_json(arr, name)
    return {name: to_json(arr, name) for name, arr in outputs.items()}


def batchable(sig: Signature) -> bool:
    """Row requests of ``sig`` can be concatenated: every input has a free dimension 0."""
    return bool(sig.inputs) and all(
        spec.shape is not None and len(spec.shape) > 0 and spec.shape[0] is None
        for spec in sig.inputs.values()
    )


class TensorModel(Model):
    """A model of named tensors; subclasses implement :meth:`run` (the model-call seam).

    Row-format requests go through ``self.batcher`` when the server enables adaptive batching
    (see :mod:`runtimes.batching`) and the signature has a free batch dimension; columnar
    requests have no batch rules and always run alone.
    """

    batcher: Any = None

    @abstractmethod
    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one signature on already validated inputs; return its outputs by name."""

    def batch_plan(self, body: dict[str, Any]) -> tuple[str, dict[str, np.ndarray], int] | None:
        """``(signature, feeds, rows)`` for a row request that batching may merge, else None."""
        sig_name, sig = self.signature(body.get("signature_name"))
        if "instances" not in body or "inputs" in body or not batchable(sig):
            return None
        feeds, batch = rows_to_feeds(body["instances"], sig)
        return sig_name, feeds, batch

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        sig_name, sig = self.signature(body.get("signature_name"))
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows and has_cols:
            raise BadRequest('request has both "instances" and "inputs": send only one')
        if has_rows:
            feeds, batch = rows_to_feeds(body["instances"], sig)
            run = self.batcher.run if self.batcher is not None and batchable(sig) else self.run
            return {"predictions": outputs_to_rows(run(sig_name, feeds), batch)}
        if has_cols:
            feeds = columns_to_feeds(body["inputs"], sig)
            return {"outputs": outputs_to_columns(self.run(sig_name, feeds))}
        raise BadRequest('missing "instances" or "inputs" in the request body')

    def example_feeds(self, sig: Signature) -> dict[str, np.ndarray]:
        """A batch of one zero/empty value per input, for warm-up."""
        feeds = {}
        for name, spec in sig.inputs.items():
            dims = [1] + [1 if d is None else d for d in (spec.shape or (None,))[1:]]
            if spec.is_string:
                arr = np.full(dims, b"", dtype=object)
            else:
                arr = np.zeros(dims, dtype=spec.numpy_dtype())
            feeds[name] = arr
        return feeds
