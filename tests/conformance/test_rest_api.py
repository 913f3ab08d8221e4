"""TF-Serving REST semantics, checked over HTTP against a real SavedModel with two versions."""

from __future__ import annotations

import base64
import re
import signal
import threading
import time

import pytest

from runtimes.testing import RunningServer

pytestmark = pytest.mark.integration


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def test_status_reports_highest_version_available(server):
    status, body = server.request("GET", "/v1/models/m")
    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": "2",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    status, body = server.request("GET", "/v1/models/m/versions/2")
    assert status == 200 and body["model_version_status"][0]["version"] == "2"


@pytest.mark.parametrize(
    "path,status,fragment",
    [
        ("/v1/models/m/versions/1", 404, "Specific(m, 1)"),
        ("/v1/models/other", 404, "Latest(other)"),
        ("/v1/models/m/versions/x", 400, "version"),
        ("/v1/models/m/versions/1/metadata", 404, "Specific(m, 1)"),
    ],
)
def test_unknown_model_or_version(server, path, status, fragment):
    got, body = server.request("GET", path)
    assert got == status
    assert fragment in body["error"]


def test_older_version_cannot_predict(server):
    status, body = server.request(
        "POST", "/v1/models/m/versions/1:predict", {"instances": [[1, 2, 3]]}
    )
    assert status == 404 and "Specific(m, 1)" in body["error"]
    status, body = server.request(
        "POST", "/v1/models/m/versions/2:predict", {"instances": [[1, 2, 3]]}
    )
    assert status == 200 and body == {"predictions": [12.0]}


def test_metadata_envelope(server):
    status, body = server.request("GET", "/v1/models/m/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "m", "signature_name": "", "version": "2"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "two", "text", "busy"}
    x = sigs["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
        "unknown_rank": False,
    }
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(sigs["two"]["outputs"]) == {"sum", "product"}
    assert sigs["text"]["inputs"]["s"]["dtype"] == "DT_STRING"


def test_row_format_single_output_is_a_list_of_values(server):
    status, body = server.request(
        "POST", "/v1/models/m:predict", {"instances": [[1, 2, 3], [0.5, 0.5, 0]]}
    )
    assert status == 200
    assert body == {"predictions": [12.0, 2.0]}


def test_row_format_named_instances(server):
    status, body = server.request("POST", "/v1/models/m:predict", {"instances": [{"x": [1, 1, 1]}]})
    assert status == 200 and body == {"predictions": [6.0]}


def test_columnar_format_bare_and_named(server):
    status, body = server.request("POST", "/v1/models/m:predict", {"inputs": [[1, 2, 3]]})
    assert status == 200 and body == {"outputs": [12.0]}
    status, body = server.request("POST", "/v1/models/m:predict", {"inputs": {"x": [[1, 0, 0]]}})
    assert status == 200 and body == {"outputs": [2.0]}


def test_two_inputs_two_outputs(server):
    req = {
        "signature_name": "two",
        "instances": [{"a": [1, 2], "b": [3, 4]}, {"a": [0, 1], "b": [2, 2]}],
    }
    status, body = server.request("POST", "/v1/models/m:predict", req)
    assert status == 200
    assert body == {
        "predictions": [
            {"sum": [4.0, 6.0], "product": [3.0, 8.0]},
            {"sum": [2.0, 3.0], "product": [0.0, 2.0]},
        ]
    }
    req = {"signature_name": "two", "inputs": {"a": [[1, 2]], "b": [[3, 4]]}}
    status, body = server.request("POST", "/v1/models/m:predict", req)
    assert status == 200
    assert body == {"outputs": {"sum": [[4.0, 6.0]], "product": [[3.0, 8.0]]}}


def test_string_input_from_b64_and_text(server):
    raw = b"\xffhello"
    req = {"signature_name": "text", "instances": [b64(raw), {"s": "abc"}]}
    status, body = server.request("POST", "/v1/models/m:predict", req)
    assert status == 200
    first, second = body["predictions"]
    assert first["length"] == 6
    assert first["echo_bytes"] == b64(raw)  # *_bytes outputs are always base64
    assert first["upper"] == b64(b"\xffHELLO")  # not UTF-8, so base64 as well
    assert second == {"length": 3, "upper": "ABC", "echo_bytes": b64(b"abc")}
    status, body = server.request(
        "POST", "/v1/models/m:predict", {"signature_name": "text", "inputs": [b64(b"zz")]}
    )
    assert status == 200 and body["outputs"]["upper"] == ["ZZ"]


@pytest.mark.parametrize(
    "payload,fragment",
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        ({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, "both"),
        ({"signature_name": "serving_default"}, "missing"),
        ({"instances": []}, "non-empty"),
        ({"signature_name": "nope", "instances": [[1, 2, 3]]}, "nope"),
        ({"instances": [{"x": [1, 2, 3], "z": 1}]}, "unknown input"),
        ({"signature_name": "two", "instances": [{"a": [1, 2]}]}, "missing input"),
        ({"signature_name": "two", "inputs": {"a": [[1, 2]], "c": [[1, 2]]}}, "unknown input"),
        ({"instances": [[1, 2]]}, "shape"),
        ({"instances": [[1, 2, 3], [1, 2]]}, "ragged"),
        ({"instances": [["a", "b", "c"]]}, "wrong type"),
        ({"signature_name": "text", "instances": [{"b64": "%%%"}]}, "base64"),
        ({"signature_name": "text", "instances": [["a"], "b"]}, "ragged"),
        ({"signature_name": "two", "instances": [[1, 2]]}, "several inputs"),
    ],
)
def test_bad_requests_are_400(server, payload, fragment):
    status, body = server.request("POST", "/v1/models/m:predict", payload)
    assert status == 400, body
    assert fragment.lower() in body["error"].lower()


def test_routing_errors(server):
    status, body = server.request("POST", "/v1/models/m:explain", {"instances": [[1, 2, 3]]})
    assert status == 404 and "explain" in body["error"]
    status, body = server.request("GET", "/v1/models/m:predict")
    assert status == 405 and "POST" in body["error"]
    status, body = server.request("POST", "/v1/models/nope:predict", {"instances": [[1, 2, 3]]})
    assert status == 404 and "nope" in body["error"]


def test_classify_on_a_predict_signature_is_400(server):
    status, body = server.request("POST", "/v1/models/m:classify", {"examples": [{"x": 1.0}]})
    assert status == 400 and "error" in body


def test_metrics_count_requests_by_model_version_status(server):
    server.request("POST", "/v1/models/m:predict", {"instances": [[1, 2, 3]]})
    server.request("POST", "/v1/models/m:predict", b"{bad")
    status, text = server.request("GET", "/metrics")
    assert status == 200
    ok = re.search(
        r'ems_runtime_requests_total\{method="predict",model="m",status="200",version="2"\} (\d+)',
        text,
    )
    bad = re.search(
        r'ems_runtime_requests_total\{method="predict",model="m",status="400",version="2"\} (\d+)',
        text,
    )
    assert ok and float(ok.group(1)) >= 1
    assert bad and float(bad.group(1)) >= 1
    assert 'ems_runtime_request_duration_seconds_bucket{le="0.005",method="predict"' in text


def test_sigterm_finishes_in_flight_request_then_exits_zero(conformance_dir):
    srv = RunningServer("tfserving", conformance_dir).start()
    result = {}

    def slow() -> None:
        req = {"signature_name": "busy", "inputs": 40000}
        result["answer"] = srv.request("POST", "/v1/models/m:predict", req)

    thread = threading.Thread(target=slow)
    thread.start()
    # SIGTERM once the server itself says the request is being answered (not after a guess)
    deadline = time.monotonic() + 60
    while "ems_runtime_requests_in_flight 1.0" not in srv.request("GET", "/metrics")[1]:
        assert time.monotonic() < deadline and thread.is_alive(), "never in flight"
        time.sleep(0.01)
    srv.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    assert srv.proc.wait(60) == 0
    status, body = result["answer"]
    assert status == 200 and isinstance(body["outputs"], float)
    with pytest.raises(OSError):
        srv.request("GET", "/v1/models/m")
    assert "finishing in-flight" in srv.stderr()
    srv.stop()


def test_bad_model_exits_nonzero_with_message(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    srv = RunningServer("tfserving", tmp_path)
    with pytest.raises(RuntimeError) as info:
        srv.start()
    assert "exited 1" in str(info.value)
    assert "cannot serve model m" in str(info.value)
