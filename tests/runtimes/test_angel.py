"""The Angel runtime on the real LR and DeepFM models in shared/testdata."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders.angel import AngelModel
from runtimes.loaders.angel_format import read_meta
from runtimes.testing import RunningServer


def lr_dir(testdata: Path) -> Path:
    return testdata / "models/angel/lr/lr-model/6"


def deepfm_dir(testdata: Path) -> Path:
    return testdata / "models/angel/deepFM/deepFM-model/0"


def raw_rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().split()]


def reference_lr(testdata: Path, x: np.ndarray) -> float:
    """w.x + b from the text files directly: row 0 is the first 123 `col,value` lines."""
    lines = raw_rows(lr_dir(testdata) / "input_weight/0")[:123]
    w = np.zeros(123)
    for col, value in lines:
        w[int(col)] = value
    b = raw_rows(lr_dir(testdata) / "input_bias/0")[0][1]
    return float(w @ x + b)


def reference_deepfm(testdata: Path, idx: list[int], vals: list[float]) -> float:
    """DeepFM written out longhand from the files: linear + FM cross + 3 dense layers."""
    root = deepfm_dir(testdata)

    def vec(name: str, size: int) -> np.ndarray:
        out = np.zeros(size)
        for row in raw_rows(root / name / "0"):
            if len(row) == 3 and row[0] == 0:
                out[int(row[1])] = row[2]
            elif len(row) == 2:
                out[int(row[0])] = row[1]
        return out

    emb = {int(r[0]): np.array(r[1:]) for r in raw_rows(root / "embedding_embedding/0")}
    w = vec("input_weight", 148)
    linear = sum(w[i] * v for i, v in zip(idx, vals, strict=True)) + vec("input_bias", 1)[0]
    e = [emb[i] * v for i, v in zip(idx, vals, strict=True)]
    s = sum(e)
    cross = 0.5 * float(np.sum(s * s - sum(x * x for x in e)))
    h = np.concatenate(e)
    for name, (n_in, n_out), relu in [
        ("fclayer_0", (104, 100), True),
        ("fclayer_1", (100, 100), True),
        ("fclayer", (100, 1), False),
    ]:
        w = vec(f"{name}_weight", n_in * n_out).reshape(n_in, n_out)
        h = h @ w + vec(f"{name}_bias", n_out)
        h = np.maximum(h, 0) if relu else h
    return float(linear + cross + h[0])


def test_meta_header_is_length_prefixed_json(testdata):
    raw = (lr_dir(testdata) / "input_weight/meta").read_bytes()
    (length,) = struct.unpack(">i", raw[:4])
    assert length == len(raw) - 4
    assert read_meta(lr_dir(testdata) / "input_weight")["matrixName"] == "input_weight"


def test_lr_dense_and_sparse_match_the_files(testdata):
    model = AngelModel(lr_dir(testdata), 1)
    rng = np.random.default_rng(1)
    x = (rng.random(123) < 0.1).astype(np.float64)
    idx = np.flatnonzero(x)
    body = {
        "instances": [
            x.tolist(),
            {"sparseIndices": idx.tolist(), "sparseValues": [1.0] * idx.size},
        ]
    }
    dense, sparse = model.predict(body)["predictions"]
    want = reference_lr(testdata, x)
    for pred in (dense, sparse):
        assert pred["pred"] == pytest.approx(want, rel=1e-5)
        assert pred["proba"] == pytest.approx(1 / (1 + math.exp(-want)), rel=1e-5)
        assert pred["predLabel"] == (1 if want > 0 else -1)


def test_lr_gives_both_labels(testdata):
    model = AngelModel(lr_dir(testdata), 1)
    preds = model.predict(
        {"instances": [{"sparseIndices": [i], "sparseValues": [3.0]} for i in range(123)]}
    )["predictions"]
    assert {p["predLabel"] for p in preds} == {1.0, -1.0}


def test_deepfm_matches_longhand_forward_pass(testdata):
    model = AngelModel(deepfm_dir(testdata), 1)
    rng = np.random.default_rng(3)
    for _ in range(5):
        idx = sorted(rng.choice(148, 13, replace=False).tolist())
        vals = rng.uniform(0.5, 2.0, 13).round(3).tolist()
        (pred,) = model.predict({"instances": [{"sparseIndices": idx, "sparseValues": vals}]})[
            "predictions"
        ]
        want = reference_deepfm(testdata, idx, vals)
        assert pred["pred"] == pytest.approx(want, rel=1e-4, abs=1e-6)
        assert pred["proba"] == pytest.approx(1 / (1 + math.exp(-want)), rel=1e-4)


@pytest.mark.parametrize(
    "instance,fragment",
    [
        ([1.0] * 5, "123 dense features"),
        ({"sparseIndices": [1, 200], "sparseValues": [1, 1]}, "out of"),
        ({"sparseIndices": [1, 2], "sparseValues": [1]}, "same length"),
        ({"sparseIndices": [1, 1], "sparseValues": [1, 1]}, "duplicate"),
        ({"sparse": [1]}, "sparseIndices"),
        ("text", "must be"),
        (["a"] * 123, "numbers"),
    ],
)
def test_lr_bad_instances(testdata, instance, fragment):
    model = AngelModel(lr_dir(testdata), 1)
    with pytest.raises(BadRequest, match=fragment):
        model.predict({"instances": [instance]})


def test_deepfm_needs_one_feature_per_field(testdata):
    model = AngelModel(deepfm_dir(testdata), 1)
    with pytest.raises(BadRequest, match="one non-zero feature per field"):
        model.predict({"instances": [{"sparseIndices": [1, 2], "sparseValues": [1, 1]}]})


def test_not_an_angel_model(tmp_path):
    with pytest.raises(ModelLoadError, match=r"graph\.json"):
        AngelModel(tmp_path, 1)


@pytest.mark.integration
def test_angel_over_http(testdata):
    with RunningServer("angel", deepfm_dir(testdata).parent) as srv:
        status, body = srv.request("GET", "/v1/models/m")
        assert body["model_version_status"][0]["version"] == "0"
        idx = list(range(0, 130, 10))
        status, body = srv.request(
            "POST",
            "/v1/models/m:predict",
            {"instances": [{"sparseIndices": idx, "sparseValues": [1.0] * 13}]},
        )
        assert status == 200
        assert set(body["predictions"][0]) == {"pred", "proba", "predLabel"}
        assert body["predictions"][0]["pred"] == pytest.approx(
            reference_deepfm(testdata, idx, [1.0] * 13), rel=1e-4
        )
        status, body = srv.request(
            "POST",
            "/v1/models/m:classify",
            {"examples": [{"sparseIndices": idx, "sparseValues": [1.0] * 13}]},
        )
        assert status == 200 and [c for c, _ in body["results"][0]] == ["-1", "1"]
        status, body = srv.request("GET", "/v1/models/m/metadata")
        assert status == 200
        sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert set(sig["outputs"]) == {"pred", "proba", "predLabel"}
        status, body = srv.request("POST", "/v1/models/m:predict", {"instances": [[1.0]]})
        assert status == 400 and "148" in body["error"]
