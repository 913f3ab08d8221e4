"""A PMML example written by sklearn2pmml (its converter runs on the local Java)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IRIS_FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def iris() -> tuple[Any, Any]:
    """Iris as a DataFrame with PMML-friendly column names and a string ``species`` target."""
    import pandas as pd
    from sklearn.datasets import load_iris

    data = load_iris()
    x = pd.DataFrame(data.data, columns=list(IRIS_FIELDS))
    y = pd.Series(data.target_names[data.target], name="species")
    return x, y


def export_pmml(estimator: Any, x: Any, y: Any, path: Path) -> Any:
    """Fit ``estimator`` in a PMMLPipeline on (x, y), write it to ``path``, return the pipeline."""
    from sklearn2pmml import sklearn2pmml
    from sklearn2pmml.pipeline import PMMLPipeline

    pipeline = PMMLPipeline([("model", estimator)])
    pipeline.fit(x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    sklearn2pmml(pipeline, str(path))
    return pipeline


def write_pmml(out: Path) -> dict[str, Any]:
    """``out/pmml/1/iris.pmml`` (a logistic regression on all four fields) and a request."""
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    root = out / "pmml"
    export_pmml(LogisticRegression(max_iter=500), x, y, root / "1" / "iris.pmml")
    named = {"instances": [dict(zip(IRIS_FIELDS, [5.1, 3.5, 1.4, 0.2], strict=True))]}
    (root / "request.json").write_text(json.dumps(named))
    return {"classes": sorted(set(y))}
