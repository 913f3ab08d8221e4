"""Angel loader: models trained by the Angel parameter server, scored with NumPy.

Supports the layers of Angel's LR / linear regression, FM and DeepFM graphs: SimpleInputLayer,
Embedding, BiInnerSumCross, FCLayer (chains of ``outputdims``), SumPooling and
SimpleLossLayer. Instances come dense (``[x0, x1, ...]``) or sparse (``{"sparseIndices": [...],
"sparseValues": [...]}``); each prediction is ``{"pred", "proba", "predLabel"}`` as Angel
Serving answers. Fully connected weights are stored flat, row-major as [input dim, output dim].
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders.angel_format import read_embedding, read_vector
from runtimes.loaders.base import DEFAULT_SIGNATURE, Signature, TensorSpec
from runtimes.loaders.record import RecordModel, examples_of

TRANSFUNCS = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
}
CLASSIFY_LOSSES = {"logloss", "hingeloss"}
REGRESS_LOSSES = {"l2loss", "huberloss"}


def _kind(layer: dict[str, Any]) -> str:
    return str(layer.get("type", "")).lower()


def _func_name(spec: Any) -> str:
    name = spec.get("type", "identity") if isinstance(spec, dict) else (spec or "identity")
    name = str(name).lower()
    if name not in TRANSFUNCS:
        raise ModelLoadError(f"unsupported Angel transfer function {name!r}")
    return name


class AngelModel(RecordModel):
    """An Angel ``graph.json`` plus its matrices, evaluated as Angel's forward pass does."""

    runtime = "angel"

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(path, threads)
        try:
            graph = json.loads((path / "graph.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path} is not an Angel model: graph.json: {exc}") from None
        data = graph.get("data", {})
        self.index_range = int(data.get("indexrange", 0))
        if self.index_range <= 0:
            raise ModelLoadError("graph.json: data.indexrange must be a positive feature count")
        self.layers = {layer["name"]: layer for layer in graph.get("layers", [])}
        losses = [n for n, layer in self.layers.items() if _kind(layer) == "simplelosslayer"]
        if len(losses) != 1:
            raise ModelLoadError("graph.json must have exactly one simplelosslayer")
        self.loss_layer = self.layers[losses[0]]
        self.loss = _func_name_loss(self.loss_layer.get("lossfunc"))
        self.params: dict[str, Any] = {}
        for name, layer in self.layers.items():
            self._load_params(name, layer)
        spec = TensorSpec
        self.signatures = {
            DEFAULT_SIGNATURE: Signature(
                inputs={
                    "dense": spec("dense", "DT_FLOAT", (None, self.index_range)),
                    "sparseIndices": spec("sparseIndices", "DT_INT64", (None, None)),
                    "sparseValues": spec("sparseValues", "DT_FLOAT", (None, None)),
                },
                outputs={k: spec(k, "DT_FLOAT", (None,)) for k in ("pred", "proba", "predLabel")},
            )
        }

    def _matrix(self, name: str) -> np.ndarray:
        folder = self.path / name
        if not folder.is_dir():
            raise ModelLoadError(f"Angel model is missing matrix folder {name}/")
        return read_vector(folder)

    def _load_params(self, name: str, layer: dict[str, Any]) -> None:
        kind = _kind(layer)
        if kind == "simpleinputlayer":
            if int(layer.get("outputdim", 1)) != 1:
                raise ModelLoadError(f"layer {name}: only outputdim 1 input layers are supported")
            weight, bias = self._matrix(f"{name}_weight"), self._matrix(f"{name}_bias")
            if weight.shape[0] != self.index_range:
                raise ModelLoadError(f"{name}_weight has {weight.shape[0]} columns, not indexrange")
            self.params[name] = (weight, float(bias[0]), _func_name(layer.get("transfunc")))
        elif kind == "embedding":
            factors = int(layer["numfactors"])
            table = read_embedding(self.path / f"{name}_embedding", factors)
            self.params[name] = (table, factors, int(layer.get("outputdim", 0)))
        elif kind == "fclayer":
            dims = [int(d) for d in layer["outputdims"]]
            funcs = [_func_name(f) for f in layer.get("transfuncs", ["identity"] * len(dims))]
            in_dim = int(self.layers[layer["inputlayer"]].get("outputdim", 0))
            stack = []
            for i, out_dim in enumerate(dims):
                prefix = name if i == len(dims) - 1 else f"{name}_{i}"
                w, b = self._matrix(f"{prefix}_weight"), self._matrix(f"{prefix}_bias")
                if w.size != in_dim * out_dim or b.size != out_dim:
                    raise ModelLoadError(
                        f"{prefix}_weight has {w.size} values, expected {in_dim}x{out_dim}"
                    )
                stack.append((w.reshape(in_dim, out_dim), b, funcs[i]))
                in_dim = out_dim
            self.params[name] = stack
        elif kind not in ("biinnersumcross", "sumpooling", "simplelosslayer"):
            raise ModelLoadError(f"unsupported Angel layer type {layer.get('type')!r} ({name})")

    def is_record(self, value: dict[str, Any]) -> bool:
        return "sparseIndices" in value

    def _sparse(self, index: int, record: Any) -> tuple[np.ndarray, np.ndarray]:
        """A record as sorted feature indices and their values (zeros dropped)."""
        if isinstance(record, dict):
            unknown = set(record) - {"sparseIndices", "sparseValues"}
            if unknown or "sparseIndices" not in record:
                raise BadRequest(
                    f'instance {index}: a sparse instance has "sparseIndices" and '
                    f'"sparseValues" only (got {", ".join(sorted(record))})'
                )
            try:
                idx = np.asarray(record["sparseIndices"], dtype=np.int64)
                vals = np.asarray(record.get("sparseValues", [1.0] * idx.size), dtype=np.float32)
            except (ValueError, TypeError) as exc:
                raise BadRequest(f"instance {index}: {exc}") from None
            if idx.ndim != 1 or vals.shape != idx.shape:
                raise BadRequest(
                    f"instance {index}: sparseIndices and sparseValues must be flat lists "
                    "of the same length"
                )
            if idx.size and (idx.min() < 0 or idx.max() >= self.index_range):
                raise BadRequest(f"instance {index}: feature index out of [0, {self.index_range})")
            if np.unique(idx).size != idx.size:
                raise BadRequest(f"instance {index}: duplicate feature index")
        elif isinstance(record, list):
            try:
                dense = np.asarray(record, dtype=np.float32)
            except (ValueError, TypeError) as exc:
                raise BadRequest(f"instance {index}: dense values must be numbers: {exc}") from None
            if dense.shape != (self.index_range,):
                raise BadRequest(
                    f"instance {index} has shape {list(dense.shape)}; the model takes "
                    f"{self.index_range} dense features"
                )
            idx = np.flatnonzero(dense)
            vals = dense[idx]
        else:
            raise BadRequest(f"instance {index} must be a list of features or a sparse object")
        order = np.argsort(idx, kind="stable")
        keep = vals[order] != 0
        return idx[order][keep], vals[order][keep]

    def _forward(self, name: str, idx: np.ndarray, vals: np.ndarray, cache: dict[str, Any]) -> Any:
        if name in cache:
            return cache[name]
        layer = self.layers[name]
        kind = _kind(layer)
        if kind == "simpleinputlayer":
            weight, bias, func = self.params[name]
            out = TRANSFUNCS[func](np.float32(weight[idx] @ vals + bias))
        elif kind == "embedding":
            table, _, _ = self.params[name]
            out = (table[idx] * vals[:, None]).reshape(-1)  # [nnz * factors], one block a field
        elif kind == "biinnersumcross":
            emb = self._forward(layer["inputlayer"], idx, vals, cache)
            factors = self.params[layer["inputlayer"]][1]
            e = emb.reshape(-1, factors)
            out = np.float32(0.5 * np.sum(e.sum(axis=0) ** 2 - (e**2).sum(axis=0)))
        elif kind == "fclayer":
            x = self._forward(layer["inputlayer"], idx, vals, cache)
            in_dim = self.params[name][0][0].shape[0]
            if x.size != in_dim:
                raise BadRequest(
                    f"layer {name} takes {in_dim} values from {layer['inputlayer']} but the "
                    f"instance gives {x.size}: the model expects one non-zero feature per field"
                )
            for w, b, func in self.params[name]:
                x = TRANSFUNCS[func](x @ w + b)
            out = np.float32(x.reshape(-1)[0]) if x.size == 1 else x
        elif kind == "sumpooling":
            out = sum(self._forward(n, idx, vals, cache) for n in layer["inputlayers"])
        elif kind == "simplelosslayer":
            out = self._forward(layer["inputlayer"], idx, vals, cache)
        else:  # rejected at load time
            raise ModelLoadError(f"unsupported layer {name}")
        cache[name] = out
        return out

    def score(self, records: list[Any]) -> list[dict[str, Any]]:
        results = []
        for i, record in enumerate(records):
            idx, vals = self._sparse(i, record)
            pred = float(self._forward(self.loss_layer["name"], idx, vals, {}))
            if self.loss in CLASSIFY_LOSSES:
                proba = 1.0 / (1.0 + math.exp(-pred)) if pred > -500 else 0.0
                label = 1.0 if pred > 0 else -1.0
            else:  # regression: the prediction is the value itself
                proba, label = pred, pred
            results.append({"pred": pred, "proba": proba, "predLabel": label})
        return results

    def classify(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.loss not in CLASSIFY_LOSSES:
            raise BadRequest(f"this Angel model ({self.loss}) is a regression model: use :regress")
        preds = self.score(examples_of(body))
        return {"results": [[["-1", 1.0 - p["proba"]], ["1", p["proba"]]] for p in preds]}

    def regress(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.loss not in REGRESS_LOSSES:
            raise BadRequest(f"this Angel model ({self.loss}) is a classifier: use :classify")
        return {"results": [p["pred"] for p in self.score(examples_of(body))]}

    def warmup(self) -> None:
        # Fully connected layers need one feature per field: give the first ``numfield`` ones.
        fields = 1
        for name, layer in self.layers.items():
            if _kind(layer) == "embedding":
                _, factors, out_dim = self.params[name]
                fields = max(fields, out_dim // factors)
        count = min(fields, self.index_range)
        self.score([{"sparseIndices": list(range(count)), "sparseValues": [1.0] * count}])


def _func_name_loss(spec: Any) -> str:
    name = spec.get("type", "") if isinstance(spec, dict) else str(spec or "")
    name = name.lower()
    if name not in CLASSIFY_LOSSES | REGRESS_LOSSES:
        raise ModelLoadError(f"unsupported Angel loss function {name!r}")
    return name
