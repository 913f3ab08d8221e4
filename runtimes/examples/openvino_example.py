"""An OpenVINO IR converted from a TensorFlow SavedModel with OpenVINO's own converter."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 4
CLASSES = 3
SEED = 11


def build_tf_model(path: Path) -> Any:
    """A small dense network (4 features -> 16 relu -> 3 softmax), fixed random weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rng = np.random.default_rng(SEED)

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(rng.normal(0, 0.5, (FEATURES, 16)).astype(np.float32))
            self.b1 = tf.Variable(rng.normal(0, 0.1, 16).astype(np.float32))
            self.w2 = tf.Variable(rng.normal(0, 0.5, (16, CLASSES)).astype(np.float32))
            self.b2 = tf.Variable(rng.normal(0, 0.1, CLASSES).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            h = tf.nn.relu(x @ self.w1 + self.b1)
            return {"probabilities": tf.nn.softmax(h @ self.w2 + self.b2)}

    module = Dense()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return module


def write_openvino(out: Path) -> dict[str, Any]:
    """``out/openvino/1/model.xml|.bin`` converted by ``openvino.convert_model``."""
    import openvino as ov

    root = out / "openvino"
    source = root / "tf_source"
    build_tf_model(source)
    model = ov.convert_model(str(source))
    (root / "1").mkdir(parents=True, exist_ok=True)
    # Keep f32 weights: save_model would otherwise compress them to f16.
    ov.save_model(model, str(root / "1" / "model.xml"), compress_to_fp16=False)
    rows = [[5.1, 3.5, 1.4, 0.2], [0.0, -1.0, 2.0, 0.5]]
    (root / "request.json").write_text(json.dumps({"instances": rows}))
    return {"inputs": [p.get_any_name() for p in model.inputs]}
