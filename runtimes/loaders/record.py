"""TF-Serving's JSON for models that score one record at a time (PMML, Angel).

Row format: ``instances`` is a list of records and ``predictions`` one object per record.
Columnar format: ``inputs`` maps each field to a list of values (or is a bare list of records)
and ``outputs`` maps each result name to a list. ``:classify`` and ``:regress`` take
TF-Serving's ``examples`` (plus optional ``context``, merged into every example).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from runtimes.errors import BadRequest
from runtimes.loaders.base import Model


def columns_to_records(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    lengths = {k: len(v) for k, v in inputs.items() if isinstance(v, list)}
    if len(lengths) != len(inputs):
        raise BadRequest('columnar "inputs": every field must map to a list of values')
    if len(set(lengths.values())) > 1:
        raise BadRequest(f'ragged columnar "inputs": fields have different lengths {lengths}')
    count = next(iter(lengths.values()), 0)
    return [{k: v[i] for k, v in inputs.items()} for i in range(count)]


def records_to_columns(predictions: list[dict[str, Any]]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for pred in predictions:
        for key in pred:
            columns.setdefault(key, [])
    for pred in predictions:
        for key, col in columns.items():
            col.append(pred.get(key))
    return columns


def examples_of(body: dict[str, Any]) -> list[Any]:
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise BadRequest('"examples" must be a non-empty list')
    context = body.get("context") or {}
    if not isinstance(context, dict):
        raise BadRequest('"context" must be an object')
    if not context:
        return examples
    if not all(isinstance(e, dict) for e in examples):
        raise BadRequest('with "context", every example must be an object')
    return [{**context, **e} for e in examples]


class RecordModel(Model):
    """A model scored record by record; subclasses implement :meth:`score` (the model seam)."""

    @abstractmethod
    def score(self, records: list[Any]) -> list[dict[str, Any]]:
        """One result object per record; raise BadRequest for records the model cannot take."""

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        self.signature(body.get("signature_name"))
        has_rows, has_cols = "instances" in body, "inputs" in body
        if has_rows and has_cols:
            raise BadRequest('request has both "instances" and "inputs": send only one')
        if has_rows:
            instances = body["instances"]
            if not isinstance(instances, list) or not instances:
                raise BadRequest('"instances" must be a non-empty list')
            return {"predictions": self.score(instances)}
        if has_cols:
            inputs = body["inputs"]
            if isinstance(inputs, dict) and not self.is_record(inputs):
                records = columns_to_records(inputs)
            elif isinstance(inputs, list):
                records = inputs
            else:
                raise BadRequest('"inputs" must be an object of columns or a list of records')
            if not records:
                raise BadRequest('"inputs" holds no records')
            return {"outputs": records_to_columns(self.score(records))}
        raise BadRequest('missing "instances" or "inputs" in the request body')

    def is_record(self, value: dict[str, Any]) -> bool:
        """True when a dict given as ``inputs`` is one record rather than columns."""
        return False
