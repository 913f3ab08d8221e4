"""``:classify`` and ``:regress`` on SavedModel signatures with those TF-Serving methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtimes.testing import RunningServer

pytestmark = pytest.mark.integration

W = np.array([0.5, -1.0], dtype=np.float32)


def build_estimator_style_model(path: Path) -> None:
    """A TF1 graph with classification and regression SignatureDefs over tf.Example input."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = v1.io.parse_example(
            serialized,
            {
                "x": v1.io.FixedLenFeature([2], tf.float32),
                "tag": v1.io.FixedLenFeature([], tf.string, default_value=""),
            },
        )
        score = tf.reduce_sum(parsed["x"] * W, axis=1)
        p = tf.sigmoid(score)
        scores = tf.stack([1 - p, p], axis=1)
        batch = tf.shape(score)[0]
        classes = tf.tile(tf.constant([["no", "yes"]]), [batch, 1])
        builder = v1.saved_model.Builder(str(path / "1"))
        with v1.Session(graph=graph) as sess:
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={
                    "classify_x": v1.saved_model.classification_signature_def(
                        serialized, classes, scores
                    ),
                    "regress_x": v1.saved_model.regression_signature_def(serialized, score),
                    "serving_default": v1.saved_model.predict_signature_def(
                        {"examples": serialized}, {"score": score}
                    ),
                },
            )
        builder.save()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify") / "model"
    build_estimator_style_model(root)
    with RunningServer("tfserving", root) as srv:
        yield srv


def sigmoid(v: float) -> float:
    return float(1 / (1 + np.exp(-v)))


def test_classify_returns_label_score_pairs(server):
    body = {
        "signature_name": "classify_x",
        "context": {"tag": "ctx"},
        "examples": [{"x": [2.0, 0.0]}, {"x": [0.0, 3.0]}],
    }
    status, answer = server.request("POST", "/v1/models/m:classify", body)
    assert status == 200, answer
    first, second = answer["results"]
    assert [label for label, _ in first] == ["no", "yes"]
    assert first[1][1] == pytest.approx(sigmoid(1.0), rel=1e-5)
    assert second[1][1] == pytest.approx(sigmoid(-3.0), rel=1e-5)


def test_regress_returns_one_value_per_example(server):
    body = {"signature_name": "regress_x", "examples": [{"x": [2.0, 1.0]}, {"x": [1.0, 1.0]}]}
    status, answer = server.request("POST", "/v1/models/m:regress", body)
    assert status == 200, answer
    assert answer["results"] == pytest.approx([0.0, -0.5])


def test_metadata_shows_methods(server):
    status, body = server.request("GET", "/v1/models/m/metadata")
    assert status == 200
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert sigs["classify_x"]["method_name"] == "tensorflow/serving/classify"
    assert sigs["regress_x"]["method_name"] == "tensorflow/serving/regress"


@pytest.mark.parametrize(
    "verb,body,fragment",
    [
        ("classify", {"signature_name": "regress_x", "examples": [{"x": [1, 2]}]}, "method"),
        ("regress", {"signature_name": "serving_default", "examples": [{"x": [1, 2]}]}, "method"),
        ("classify", {"signature_name": "classify_x", "examples": []}, "non-empty"),
        ("classify", {"signature_name": "classify_x", "examples": [{"x": [1]}]}, "x"),
        ("classify", {"signature_name": "classify_x", "examples": [{"x": [1, "a"]}]}, "one kind"),
        # As in TF-Serving, JSON integers are int64 features: a float feature needs 1.0, not 1.
        ("regress", {"signature_name": "regress_x", "examples": [{"x": [1, 1]}]}, "type"),
    ],
)
def test_bad_examples_are_400(server, verb, body, fragment):
    status, answer = server.request("POST", f"/v1/models/m:{verb}", body)
    assert status == 400, answer
    assert fragment in answer["error"]
