"""Plain functions of the runtime server: CPU quota, versions, JSON <-> arrays, signatures."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes import cpus
from runtimes.errors import BadRequest, ModelLoadError
from runtimes.jsonvalues import to_array, to_json
from runtimes.loaders.base import Signature, TensorSpec
from runtimes.loaders.record import columns_to_records, examples_of, records_to_columns
from runtimes.loaders.tensor import columns_to_feeds, outputs_to_rows, rows_to_feeds
from runtimes.versions import resolve_version


@pytest.mark.parametrize(
    "text,want", [("max 100000", None), ("200000 100000", 2.0), ("150000 100000\n", 1.5)]
)
def test_parse_cpu_max(text, want):
    assert cpus.parse_cpu_max(text) == want


def test_cgroup_v2_quota_wins_over_host_count(tmp_path, monkeypatch):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    monkeypatch.setattr(cpus, "CGROUP_V2", cpu_max)
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.delenv("EMS_RUNTIME_CPUS", raising=False)
    assert cpus.available_cpus() == 2  # ceil(1.5), not 64
    cpu_max.write_text("max 100000\n")
    assert cpus.available_cpus() == 64
    monkeypatch.setenv("EMS_RUNTIME_CPUS", "3")
    assert cpus.available_cpus() == 3


def test_cgroup_v1_quota(tmp_path):
    quota, period = tmp_path / "q", tmp_path / "p"
    quota.write_text("300000")
    period.write_text("100000")
    assert cpus.cgroup_cpu_limit(tmp_path / "absent", quota, period) == 3.0
    quota.write_text("-1")
    assert cpus.cgroup_cpu_limit(tmp_path / "absent", quota, period) is None


def test_highest_numbered_version_is_served(tmp_path):
    for name in ("1", "10", "9", "notes"):
        (tmp_path / name).mkdir()
    got = resolve_version(tmp_path)
    assert got.version == "10" and got.path == tmp_path / "10"


def test_unversioned_folder_is_version_1(tmp_path):
    (tmp_path / "model.xml").write_text("")
    assert resolve_version(tmp_path).version == "1"
    with pytest.raises(ModelLoadError):
        resolve_version(tmp_path / "missing")


def test_string_arrays_from_text_and_b64():
    arr = to_array([["a", {"b64": "/w=="}]], object, "s")
    assert arr.shape == (1, 2) and arr[0, 1] == b"\xff" and arr[0, 0] == b"a"
    with pytest.raises(BadRequest, match="ragged"):
        to_array([["a"], ["b", "c"]], object, "s")
    with pytest.raises(BadRequest, match="base64"):
        to_array([{"b64": "***"}], object, "s")
    with pytest.raises(BadRequest, match="string"):
        to_array([1], object, "s")


def test_numeric_arrays():
    assert to_array([[1, 2], [3, 4]], np.float32, "x").dtype == np.float32
    with pytest.raises(BadRequest, match="ragged"):
        to_array([[1, 2], [3]], np.float32, "x")
    with pytest.raises(BadRequest, match="wrong type"):
        to_array([["a"]], np.float32, "x")


def test_to_json_strings_and_bytes():
    arr = np.array([b"ok", b"\xff"], dtype=object)
    assert to_json(arr, "label") == ["ok", {"b64": "/w=="}]
    assert to_json(arr, "label_bytes") == [{"b64": "b2s="}, {"b64": "/w=="}]


SIG = Signature(
    inputs={
        "a": TensorSpec("a", "DT_FLOAT", (None, 2)),
        "b": TensorSpec("b", "DT_INT64", (None,)),
    },
    outputs={"y": TensorSpec("y", "DT_FLOAT", (None,))},
)
ONE = Signature(inputs={"x": TensorSpec("x", "DT_FLOAT", (None, 2))}, outputs={})


def test_rows_to_feeds_batches_each_input():
    feeds, batch = rows_to_feeds([{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}], SIG)
    assert batch == 2
    assert feeds["a"].shape == (2, 2) and feeds["b"].tolist() == [3, 6]
    with pytest.raises(BadRequest, match="several inputs"):
        rows_to_feeds([[1, 2]], SIG)
    with pytest.raises(BadRequest, match="shape"):
        rows_to_feeds([[1, 2, 3]], ONE)


def test_columns_to_feeds_bare_and_named():
    assert columns_to_feeds([[1, 2]], ONE)["x"].shape == (1, 2)
    assert columns_to_feeds({"x": [[1, 2]]}, ONE)["x"].shape == (1, 2)
    with pytest.raises(BadRequest, match="missing"):
        columns_to_feeds({"a": [[1, 2]]}, SIG)


def test_outputs_to_rows():
    rows = outputs_to_rows({"y": np.array([1.0, 2.0], dtype=np.float32)}, 2)
    assert [float(v) for v in rows] == [1.0, 2.0]
    rows = outputs_to_rows({"p": np.zeros((2, 3)), "c": np.array([b"a", b"b"], dtype=object)}, 2)
    assert rows[1]["c"] == "b" and rows[1]["p"].shape == (3,)
    with pytest.raises(BadRequest, match="rows"):
        outputs_to_rows({"y": np.zeros(3)}, 2)


def test_record_helpers():
    assert columns_to_records({"x": [1, 2], "y": [3, 4]}) == [{"x": 1, "y": 3}, {"x": 2, "y": 4}]
    with pytest.raises(BadRequest, match="ragged"):
        columns_to_records({"x": [1, 2], "y": [3]})
    assert records_to_columns([{"a": 1}, {"a": 2}]) == {"a": [1, 2]}
    assert examples_of({"context": {"c": 1}, "examples": [{"x": 2}]}) == [{"c": 1, "x": 2}]
    with pytest.raises(BadRequest):
        examples_of({"examples": []})


def test_metadata_tensor_info_format():
    info = TensorSpec("x", "DT_FLOAT", (None, 3), "serving_default_x:0").to_json()
    assert info == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
            "unknown_rank": False,
        },
        "name": "serving_default_x:0",
    }
    assert TensorSpec("x", "DT_FLOAT", None).to_json()["tensor_shape"]["unknown_rank"] is True
