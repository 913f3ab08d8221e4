"""Deeply nested request JSON is a 400 with a clear message on the runtime server, never a 500:
at the parser's own limit (orjson, 1024 levels), just under it (where recursive code would
overflow the stack), and in the string-tensor flattener."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from runtimes.errors import BadRequest
from runtimes.jsonvalues import to_array
from runtimes.testing import RunningServer


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_string_tensor_deeper_than_64_dimensions_is_a_bad_request():
    value: list = ["x"]
    for _ in range(1_000):
        value = [value]
    with pytest.raises(BadRequest, match="at most 64 dimensions"):
        to_array(value, object, "s")


def test_angel_runtime_answers_400_to_deep_json(testdata):
    model = testdata / "models/angel/lr/lr-model/6"
    with RunningServer("angel", model) as server:
        url = f"{server.url}/v1/models/m:predict"
        for depth in (1_000, 1_023, 1_025, 100_000):
            for body in (
                b'{"instances": ' + b"[" * depth + b"]" * depth + b"}",
                b'{"instances": [' + b'{"a": ' * depth + b"1" + b"}" * depth + b"]}",
            ):
                status, answer = post(url, body)
                assert status == 400, (depth, answer)
                assert answer["error"], answer
        # The server still answers a good request afterwards.
        status, answer = post(url, json.dumps({"instances": [[0.0] * 123]}).encode())
        assert status == 200, answer
