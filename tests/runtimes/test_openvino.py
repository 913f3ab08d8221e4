"""The OpenVINO runtime on the example IR, compared with the TensorFlow model it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtimes.errors import ModelLoadError
from runtimes.loaders.openvino import OpenVinoModel
from runtimes.testing import RunningServer

pytestmark = pytest.mark.integration


def tf_reference(examples_dir, rows):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(examples_dir / "openvino" / "tf_source"))
    out = loaded.signatures["serving_default"](x=tf.constant(rows, dtype=tf.float32))
    return out["probabilities"].numpy()


def test_ir_answers_like_tensorflow_over_http(examples_dir):
    rng = np.random.default_rng(5)
    rows = rng.normal(0, 2, (6, 4)).astype(np.float32)
    want = tf_reference(examples_dir, rows)
    with RunningServer("openvino", examples_dir / "openvino") as srv:
        status, body = srv.request("POST", "/v1/models/m:predict", {"instances": rows.tolist()})
        assert status == 200
        np.testing.assert_allclose(body["predictions"], want, rtol=1e-4, atol=1e-6)
        status, body = srv.request("POST", "/v1/models/m:predict", {"inputs": {"x": rows.tolist()}})
        assert status == 200
        np.testing.assert_allclose(body["outputs"], want, rtol=1e-4, atol=1e-6)
        request = json.loads((examples_dir / "openvino" / "request.json").read_text())
        status, body = srv.request("POST", "/v1/models/m:predict", request)
        assert status == 200 and len(body["predictions"]) == 2
        status, body = srv.request("GET", "/v1/models/m/metadata")
        sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["inputs"]["x"]["tensor_shape"]["dim"][1]["size"] == "4"
        for bad, fragment in [
            ({"instances": [[1.0, 2.0, 3.0]]}, "shape"),
            ({"instances": [["a", "b", "c", "d"]]}, "wrong type"),
            ({"instances": [[1, 2, 3, 4], [1, 2]]}, "ragged"),
            ({"inputs": {"y": [[1, 2, 3, 4]]}}, "unknown input"),
        ]:
            status, body = srv.request("POST", "/v1/models/m:predict", bad)
            assert status == 400 and fragment in body["error"], body


def test_missing_ir_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no OpenVINO IR"):
        OpenVinoModel(tmp_path, 1)
    (tmp_path / "model.xml").write_text("<net>")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="OpenVINO cannot load"):
        OpenVinoModel(tmp_path, 1)
