"""A CPU-heavy SavedModel for the autoscaling tests and bench: ``python -m
tests.serving.heavy_model OUT`` writes ``OUT/dense/1`` — six dense layers of 1536 units over a
256-wide input (~12 M multiply-adds per row), deterministic weights, signature
``serving_default``: ``x`` float32 [None, 256] → ``y`` float32 [None, 8]. A request of 8 rows
keeps one core busy for tens of milliseconds, so two callers at a bounded rate saturate an
instance of half a core."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

WIDTH, HIDDEN, LAYERS, OUT = 256, 1536, 6, 8


def body(rows: int = 8) -> dict:
    return {"instances": [[((i * 7 + j) % 13) / 13.0 for j in range(WIDTH)] for i in range(rows)]}


def write(out: Path) -> Path:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(11)

    class Dense(tf.Module):
        def __init__(self):
            super().__init__()
            sizes = [WIDTH] + [HIDDEN] * LAYERS
            self.ws = [
                tf.Variable(rng.normal(0, 1 / np.sqrt(a), (a, b)).astype("float32"))
                for a, b in itertools.pairwise(sizes)
            ]
            self.head = tf.Variable(rng.normal(0, 0.03, (HIDDEN, OUT)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
        def serve(self, x):
            for w in self.ws:
                x = tf.tanh(x @ w)
            return {"y": x @ self.head}

    module = Dense()
    target = out / "dense" / "1"
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    for path in [out / "dense", *(out / "dense").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
