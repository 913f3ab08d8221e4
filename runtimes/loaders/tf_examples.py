"""TF-Serving's ``:classify`` / ``:regress`` JSON ``examples`` as serialized ``tf.Example``s.

A feature value is a number, a string, ``{"b64": ...}``, or a list of one kind of those:
integers (and booleans) become ``int64_list``, floats ``float_list``, text and binary
``bytes_list`` - the same mapping TF-Serving's REST API applies.
"""

from __future__ import annotations

from typing import Any

from runtimes.errors import BadRequest
from runtimes.jsonvalues import decode_b64, is_b64


def _feature(name: str, value: Any, tf: Any) -> Any:
    values = value if isinstance(value, list) else [value]
    train = tf.train
    if all(isinstance(v, bool | int) for v in values):
        return train.Feature(int64_list=train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return train.Feature(float_list=train.FloatList(value=[float(v) for v in values]))
    if all(isinstance(v, str) or is_b64(v) for v in values):
        data = [v.encode("utf-8") if isinstance(v, str) else decode_b64(v) for v in values]
        return train.Feature(bytes_list=train.BytesList(value=data))
    raise BadRequest(
        f'feature "{name}" must be numbers, strings or b64 objects of one kind, got {value!r}'
    )


def serialize_examples(examples: list[Any], tf: Any) -> list[bytes]:
    out = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise BadRequest(f"example {i} must be an object of features")
        features = {k: _feature(k, v, tf) for k, v in example.items()}
        proto = tf.train.Example(features=tf.train.Features(feature=features))
        out.append(proto.SerializeToString())
    return out
