"""The seed's flower classifier: a SavedModel that takes JPEG bytes and names the flower.

Trained when the command runs, in a few seconds with fixed seeds, on generated pictures whose
dominant colour is the class (daisy white, dandelion yellow, roses red, sunflowers orange,
tulips purple) over a green background with noise and texture, so colour is what it learns.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
COLOURS = {
    "daisy": (240, 240, 235),
    "dandelion": (245, 220, 30),
    "roses": (200, 20, 35),
    "sunflowers": (250, 135, 15),
    "tulips": (135, 45, 175),
}
SIZE = 64
SEED = 7


def make_picture(rng: np.random.Generator, colour: tuple[int, int, int]) -> np.ndarray:
    """A ~80x80 RGB picture: green textured background, a few petals of ``colour``, noise."""
    h, w = int(rng.integers(56, 104)), int(rng.integers(56, 104))
    yy, xx = np.mgrid[0:h, 0:w]
    green = np.array([40 + rng.integers(0, 40), 110 + rng.integers(0, 50), 40], dtype=np.float32)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = green
    img += (np.sin(xx / rng.uniform(2, 6)) * 12)[..., None]  # leafy stripes
    mask = np.zeros((h, w), dtype=bool)
    cy, cx = h / 2 + rng.normal(0, h / 10), w / 2 + rng.normal(0, w / 10)
    for _ in range(int(rng.integers(5, 9))):  # petals around a centre
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.1, 0.3) * min(h, w)
        py, px = cy + dist * np.sin(angle), cx + dist * np.cos(angle)
        r = rng.uniform(0.15, 0.28) * min(h, w)
        mask |= (yy - py) ** 2 + (xx - px) ** 2 < r**2
    shade = rng.uniform(0.85, 1.1)
    img[mask] = np.array(colour, dtype=np.float32) * shade
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _build(tf: Any) -> Any:
    class Flower(tf.Module):
        """Two small convolutions, global average pooling, a dense softmax."""

        def __init__(self) -> None:
            super().__init__()
            init = tf.keras.initializers.GlorotUniform(seed=SEED)
            self.c1 = tf.Variable(init((3, 3, 3, 8)), name="conv1")
            self.b1 = tf.Variable(tf.zeros(8), name="conv1_bias")
            self.c2 = tf.Variable(init((3, 3, 8, 16)), name="conv2")
            self.b2 = tf.Variable(tf.zeros(16), name="conv2_bias")
            self.w = tf.Variable(init((16, 5)), name="dense")
            self.b = tf.Variable(tf.zeros(5), name="dense_bias")
            self.labels = tf.constant(CLASSES)

        def logits(self, images: Any) -> Any:
            x = tf.nn.relu(tf.nn.conv2d(images, self.c1, 2, "SAME") + self.b1)
            x = tf.nn.relu(tf.nn.conv2d(x, self.c2, 2, "SAME") + self.b2)
            x = tf.reduce_mean(x, axis=[1, 2])
            return x @ self.w + self.b

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes: Any) -> dict[str, Any]:
            images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.float32)
            probs = tf.nn.softmax(self.logits(images))
            idx = tf.argmax(probs, axis=1)
            return {
                "class_idx": idx,
                "probabilities": probs,
                "classes": tf.gather(self.labels, idx),
            }

    def decode(jpeg: Any) -> Any:
        img = tf.io.decode_jpeg(jpeg, channels=3)
        img = tf.image.resize(img, (SIZE, SIZE))
        return tf.ensure_shape(img / 255.0, (SIZE, SIZE, 3))

    return Flower(), decode


def jpeg(tf: Any, picture: np.ndarray) -> bytes:
    return tf.io.encode_jpeg(picture, quality=90).numpy()


def write_flower(out: Path, per_class: int = 24, steps: int = 60) -> dict[str, Any]:
    """Train and save the classifier in ``out/flower/1``; write flower.jpg and flower.json."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.random.set_seed(SEED)
    rng = np.random.default_rng(SEED)
    model, decode = _build(tf)
    pictures, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(per_class):
            pictures.append(jpeg(tf, make_picture(rng, COLOURS[name])))
            labels.append(label)
    images = tf.stack([decode(tf.constant(p)) for p in pictures])
    y = tf.constant(labels)
    opt = tf.keras.optimizers.Adam(0.03)

    @tf.function
    def step() -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(y, model.logits(images))
            )
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(steps):
        loss = step()
    root = out / "flower"
    tf.saved_model.save(model, str(root / "1"), signatures={"serving_default": model.serve})
    red = jpeg(tf, make_picture(np.random.default_rng(SEED + 1), COLOURS["roses"]))
    (root / "flower.jpg").write_bytes(red)
    request = {"instances": [{"b64": base64.b64encode(red).decode("ascii")}]}
    (root / "flower.json").write_text(json.dumps(request))
    for name in CLASSES:  # one sample per class, so tests and images can check every answer
        pic = jpeg(tf, make_picture(np.random.default_rng(SEED + 100), COLOURS[name]))
        (root / f"sample_{name}.jpg").write_bytes(pic)
    return {"final_loss": float(loss), "images": len(pictures)}
