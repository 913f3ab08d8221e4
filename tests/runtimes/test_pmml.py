"""The PMML runtime: the Angel Serving sample file and sklearn2pmml files vs scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders.pmml import PmmlModel
from runtimes.testing import RunningServer


def lr_dir(testdata: Path) -> Path:
    return testdata / "models/pmml/lr/lr-model/6"


def test_sample_lr_typed_target_and_outputs(testdata):
    model = PmmlModel(lr_dir(testdata), 1)
    preds = model.predict(
        {"instances": [{"x1": 5.1, "x2": 3.5, "x3": 1.4, "x4": 0.2}, [6.2, 3.4, 5.4, 2.3]]}
    )["predictions"]
    for pred in preds:
        assert set(pred) == {"y", "probability(-1)", "probability(1)"}
        assert isinstance(pred["y"], int)  # DataField y is dataType="integer"
        assert pred["probability(-1)"] + pred["probability(1)"] == pytest.approx(1.0)
        best = max((-1, 1), key=lambda c: pred[f"probability({c})"])
        assert pred["y"] == best
    assert [p["y"] for p in preds] == [-1, 1]


def test_positional_rows_follow_the_active_fields(testdata):
    model = PmmlModel(lr_dir(testdata), 1)
    named = model.predict({"instances": [{"x1": 6.0, "x2": 2.2, "x3": 4.0, "x4": 1.0}]})
    positional = model.predict({"instances": [[6.0, 2.2, 4.0, 1.0]]})
    assert named == positional
    columns = model.predict({"inputs": {"x1": [6.0], "x2": [2.2], "x3": [4.0], "x4": [1.0]}})
    assert columns["outputs"]["y"] == [named["predictions"][0]["y"]]


@pytest.mark.parametrize(
    "instance,fragment",
    [
        ({"x1": 1.0, "nope": 2.0}, "missing active field.s. x2, x3, x4;.*ignored.*nope"),
        ({"x2": 1.0, "x3": 1.0, "x4": 1.0}, "missing active field.s. x1;"),
        ([1.0, 2.0], "4 active fields"),
        ({"x1": "abc", "x2": 1.0, "x3": 1.0, "x4": 1.0}, "invalid value"),
        ({"x1": [1.0], "x2": 1.0, "x3": 1.0, "x4": 1.0}, "scalar"),
        ("x", "object of fields"),
    ],
)
def test_bad_rows(testdata, instance, fragment):
    model = PmmlModel(lr_dir(testdata), 1)
    with pytest.raises(BadRequest, match=fragment):
        model.predict({"instances": [instance]})


def test_fields_the_model_does_not_use_are_ignored(testdata):
    """Extra names (client columns, ids) do not change the answer; a missing active field is
    still a 400 naming it. The shared sample LR file, as Angel Serving ships it."""
    model = PmmlModel(lr_dir(testdata), 1)
    row = {"x1": 6.0, "x2": 2.2, "x3": 4.0, "x4": 1.0}
    plain = model.predict({"instances": [row]})
    extra = model.predict({"instances": [{**row, "id": "abc-1", "y": 1, "note": None}]})
    assert extra == plain
    columns = model.predict({"inputs": {**{k: [v] for k, v in row.items()}, "id": ["a"]}})
    assert columns["outputs"]["y"] == [plain["predictions"][0]["y"]]
    with pytest.raises(BadRequest, match=r"missing active field\(s\) x3;"):
        model.predict({"instances": [{"x1": 6.0, "x2": 2.2, "x4": 1.0, "id": 7}]})


@pytest.mark.integration
def test_sklearn2pmml_tree_takes_the_full_iris_row_over_http(tmp_path):
    """The issue's case: a tree that does not use every column answers the full row; the
    same row without an active field is a clear 400."""
    from sklearn.tree import DecisionTreeClassifier

    from runtimes.examples.pmml_example import IRIS_FIELDS, export_pmml, iris

    x, y = iris()
    tree = DecisionTreeClassifier(max_depth=2, random_state=0)
    pipeline = export_pmml(tree, x, y, tmp_path / "1" / "tree.pmml")
    unused = [f for f in IRIS_FIELDS if f not in PmmlModel(tmp_path / "1", 1).active]
    assert unused, "the depth-2 tree should leave at least one iris column unused"
    rows = x.iloc[::10].to_dict(orient="records")
    with RunningServer("pmml", tmp_path) as srv:
        status, body = srv.request("POST", "/v1/models/m:predict", {"instances": rows})
        assert status == 200, body
        got = [p["species"] for p in body["predictions"]]
        assert got == list(pipeline.predict(x.iloc[::10]))
        status, body = srv.request("POST", "/v1/models/m:classify", {"examples": rows[:2]})
        assert status == 200, body
        used = next(f for f in IRIS_FIELDS if f not in unused)
        partial = {k: v for k, v in rows[0].items() if k != used}
        status, body = srv.request("POST", "/v1/models/m:predict", {"instances": [partial]})
        assert status == 400
        assert f"missing active field(s) {used}" in body["error"], body


def test_not_a_pmml_folder(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no \.pmml"):
        PmmlModel(tmp_path, 1)
    (tmp_path / "bad.pmml").write_text("<PMML>nope")
    with pytest.raises(ModelLoadError, match="not well-formed"):
        PmmlModel(tmp_path, 1)


def _iris_models():
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    return {
        "tree": DecisionTreeClassifier(max_depth=4, random_state=0),
        "forest": RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0),
        "logistic": LogisticRegression(max_iter=500),
        "gbm": GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0),
    }


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["tree", "forest", "logistic", "gbm"])
def test_sklearn2pmml_classifiers_answer_like_scikit_learn(kind, tmp_path):
    from runtimes.examples.pmml_example import export_pmml, iris

    x, y = iris()
    pipeline = export_pmml(_iris_models()[kind], x, y, tmp_path / "1" / "model.pmml")
    model = PmmlModel(tmp_path / "1", 1)
    sample = x.iloc[::7]
    # Full iris rows, as clients send them: a converter may prune fields the model does not
    # use (the tree has no sepal_width at all); those are ignored, as JPMML-Evaluator does.
    rows = sample.to_dict(orient="records")
    preds = model.predict({"instances": rows})["predictions"]
    classes = list(pipeline.classes_)
    want_labels = pipeline.predict(sample)
    want_proba = pipeline.predict_proba(sample)
    for pred, label, proba in zip(preds, want_labels, want_proba, strict=True):
        assert pred["species"] == label
        got = [pred[f"probability({c})"] for c in classes]
        np.testing.assert_allclose(got, proba, atol=1e-6)


@pytest.mark.integration
def test_sklearn2pmml_regressor_answers_like_scikit_learn(tmp_path):
    import pandas as pd
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    from runtimes.examples.pmml_example import export_pmml

    data = load_diabetes()
    x = pd.DataFrame(data.data, columns=data.feature_names)
    y = pd.Series(data.target, name="progression")
    est = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0)
    pipeline = export_pmml(est, x, y, tmp_path / "1" / "model.pmml")
    model = PmmlModel(tmp_path / "1", 1)
    sample = x.iloc[:20]
    got = model.regress({"examples": sample[model.active].to_dict(orient="records")})["results"]
    np.testing.assert_allclose(got, pipeline.predict(sample), rtol=1e-5)
    with pytest.raises(BadRequest, match="regression"):
        model.classify({"examples": sample[model.active].to_dict(orient="records")})


@pytest.mark.integration
def test_pmml_example_over_http(examples_dir):
    with RunningServer("pmml", examples_dir / "pmml") as srv:
        row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
        status, body = srv.request("POST", "/v1/models/m:predict", {"instances": [row]})
        assert status == 200
        (pred,) = body["predictions"]
        assert pred["species"] == "setosa"
        assert pred["probability(setosa)"] > 0.9
        status, body = srv.request("POST", "/v1/models/m:classify", {"examples": [row]})
        assert status == 200
        labels = [label for label, _ in body["results"][0]]
        assert labels == ["setosa", "versicolor", "virginica"]
        assert body["results"][0][0][1] == pytest.approx(pred["probability(setosa)"])
        status, body = srv.request("GET", "/v1/models/m/metadata")
        sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["outputs"]["species"]["dtype"] == "DT_STRING"
        status, body = srv.request("POST", "/v1/models/m:predict", {"instances": [{"bad": 1}]})
        assert status == 400 and "missing active field(s) sepal_length" in body["error"]
        status, body = srv.request("POST", "/v1/models/m:regress", {"examples": [row]})
        assert status == 400
