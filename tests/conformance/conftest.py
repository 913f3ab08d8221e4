"""A SavedModel with several signatures and two versions, served once per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runtimes.testing import RunningServer


def build_conformance_model(path: Path, version: int) -> None:
    """Signatures: a float input, two named inputs with two outputs, a string input (b64)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    scale = float(version)

    class Conformance(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def default(self, x: Any) -> dict[str, Any]:
            return {"y": tf.reduce_sum(x, axis=1) * scale}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="a"),
                tf.TensorSpec([None, 2], tf.float32, name="b"),
            ]
        )
        def two(self, a: Any, b: Any) -> dict[str, Any]:
            return {"sum": a + b, "product": a * b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
        def text(self, s: Any) -> dict[str, Any]:
            return {"length": tf.strings.length(s), "upper": tf.strings.upper(s), "echo_bytes": s}

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="n")])
        def busy(self, n: Any) -> dict[str, Any]:
            # Burns CPU for n iterations: lets a test hold a request in flight.
            m = tf.ones([64, 64]) / 64.0
            _, out = tf.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, v @ m), [0, m])
            return {"done": tf.reduce_sum(out)}

    module = Conformance()
    tf.saved_model.save(
        module,
        str(path / str(version)),
        signatures={
            "serving_default": module.default,
            "two": module.two,
            "text": module.text,
            "busy": module.busy,
        },
    )


@pytest.fixture(scope="session")
def conformance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance") / "model"
    root.mkdir()
    for version in (1, 2):
        build_conformance_model(root, version)
    return root


@pytest.fixture(scope="session")
def server(conformance_dir: Path) -> Any:
    with RunningServer("tfserving", conformance_dir) as srv:
        yield srv
