"""A second JPEG-in classifier, for the batching benchmark and tests: a small Keras network
(three strided convolutions, global pooling, softmax) behind a SavedModel signature that takes
``image_bytes`` (DT_STRING JPEGs) and decodes and resizes them inside the graph.

Generated when called (fixed seeds, 15 Adam steps on 40 flower pictures), never downloaded.
Unlike the seed's flower model its pictures are larger (160×160 JPEGs, resized to 96×96 in
the graph), so the decode and the convolutions are a real part of each call.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.examples.flower import CLASSES, COLOURS, make_picture

SIZE = 96
PICTURE = 160
SEED = 11


def _picture(rng: np.random.Generator, colour: tuple[int, int, int]) -> np.ndarray:
    """A flower picture scaled up to PICTURE×PICTURE (nearest neighbour, then fresh noise)."""
    small = make_picture(rng, colour)
    ys = np.linspace(0, small.shape[0] - 1, PICTURE).astype(int)
    xs = np.linspace(0, small.shape[1] - 1, PICTURE).astype(int)
    big = small[ys][:, xs].astype(np.float32) + rng.normal(0, 6, (PICTURE, PICTURE, 3))
    return np.clip(big, 0, 255).astype(np.uint8)


def write_jpeg_classifier(out: Path, per_class: int = 8, steps: int = 15) -> dict[str, Any]:
    """Train and save ``out/jpeg/1``; write ``out/jpeg/request.json`` (one roses picture) and
    ``sample_<class>.jpg``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    net = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )

    def decode(jpeg: Any) -> Any:
        img = tf.io.decode_jpeg(jpeg, channels=3)
        img = tf.image.resize(img, (SIZE, SIZE))
        return tf.ensure_shape(img / 255.0, (SIZE, SIZE, 3))

    rng = np.random.default_rng(SEED)
    pictures, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(per_class):
            pictures.append(tf.io.encode_jpeg(_picture(rng, COLOURS[name]), quality=90).numpy())
            labels.append(label)
    images = tf.stack([decode(tf.constant(p)) for p in pictures])
    net.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    history = net.fit(images, np.array(labels), epochs=steps, batch_size=len(labels), verbose=0)

    class Served(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.labels = tf.constant(CLASSES)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes: Any) -> dict[str, Any]:
            batch = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
            probs = self.net(batch, training=False)
            idx = tf.argmax(probs, axis=1)
            return {"probabilities": probs, "classes": tf.gather(self.labels, idx)}

    module = Served()
    root = out / "jpeg"
    tf.saved_model.save(module, str(root / "1"), signatures={"serving_default": module.serve})
    check = np.random.default_rng(SEED + 1)
    for name in CLASSES:
        jpeg = tf.io.encode_jpeg(_picture(check, COLOURS[name]), quality=90).numpy()
        (root / f"sample_{name}.jpg").write_bytes(jpeg)
    roses = (root / "sample_roses.jpg").read_bytes()
    request = {"instances": [{"b64": base64.b64encode(roses).decode("ascii")}]}
    (root / "request.json").write_text(json.dumps(request))
    return {"final_loss": float(history.history["loss"][-1]), "images": len(pictures)}
