"""A CPU-heavy SavedModel for the autoscaling tests and bench: ``python -m
tests.serving.heavy_model OUT`` writes ``OUT/dense/1`` — a 256 → 1024 projection, then one
1024 × 1024 dense layer applied ``REPEAT`` (48) times, then an 8-wide head: ~50 M
multiply-adds per row with only 5 MB of weights (deterministic), signature ``serving_default``:
``x`` float32 [None, 256] → ``y`` float32 [None, 8]. A request of 8 rows costs a core ~10-20 ms,
so two callers at a bounded rate keep an instance of half a core above a 50 % CPU target."""

from __future__ import annotations

import sys
from pathlib import Path

WIDTH, HIDDEN, REPEAT, OUT = 256, 1024, 48, 8


def body(rows: int = 8) -> dict:
    return {"instances": [[((i * 7 + j) % 13) / 13.0 for j in range(WIDTH)] for i in range(rows)]}


def write(out: Path) -> Path:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(11)

    class Dense(tf.Module):
        def __init__(self):
            super().__init__()
            self.w_in = tf.Variable(rng.normal(0, 0.06, (WIDTH, HIDDEN)).astype("float32"))
            self.w = tf.Variable(rng.normal(0, 1 / 32, (HIDDEN, HIDDEN)).astype("float32"))
            self.head = tf.Variable(rng.normal(0, 0.03, (HIDDEN, OUT)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
        def serve(self, x):
            x = tf.tanh(x @ self.w_in)
            for _ in range(REPEAT):  # unrolled in the graph: the same weights, REPEAT matmuls
                x = tf.tanh(x @ self.w)
            return {"y": x @ self.head}

    module = Dense()
    target = out / "dense" / "1"
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    for path in [out / "dense", *(out / "dense").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
