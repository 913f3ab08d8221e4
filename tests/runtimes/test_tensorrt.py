"""TensorRT: the refusal where it cannot run, and the helpers that need no GPU."""

from __future__ import annotations

import numpy as np
import pytest

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders import tensorrt as trt_loader
from runtimes.loaders.tensorrt_bindings import (
    Binding,
    cast_input,
    check_input_shape,
    join_outputs,
    max_batch,
    signature_of,
    split_batch,
)
from runtimes.testing import RunningServer

IMAGE = Binding("images", True, "FLOAT", (-1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 8, 8))
MASK = Binding("mask", True, "INT32", (-1, 8), (1, 8), (2, 8))
SCORES = Binding("scores", False, "HALF", (-1, 10))


def tensorrt_missing() -> bool:
    return bool(trt_loader.missing_requirements())


def test_signature_names_and_types_follow_the_engine():
    sig = signature_of([IMAGE, MASK, SCORES])["serving_default"]
    assert list(sig.inputs) == ["images", "mask"] and list(sig.outputs) == ["scores"]
    assert sig.inputs["images"].dtype == "DT_FLOAT"
    assert sig.inputs["images"].shape == (None, 3, 8, 8)
    assert sig.outputs["scores"].dtype == "DT_HALF"


def test_input_shapes_are_checked_against_engine_and_profile():
    check_input_shape(IMAGE, (9, 3, 8, 8))  # batch beyond the profile is split later
    with pytest.raises(BadRequest, match="rank"):
        check_input_shape(IMAGE, (3, 8, 8))
    with pytest.raises(BadRequest, match="dimension 1 is 4"):
        check_input_shape(IMAGE, (1, 4, 8, 8))
    dynamic = Binding("seq", True, "INT32", (-1, -1), (1, 1), (8, 16))
    with pytest.raises(BadRequest, match=r"allows 1\.\.16"):
        check_input_shape(dynamic, (2, 17))


def test_inputs_are_cast_contiguous_to_engine_dtype():
    arr = cast_input(IMAGE, np.ones((2, 3, 8, 8), dtype=np.float64)[:, :, :, :])
    assert arr.dtype == np.float32 and arr.flags["C_CONTIGUOUS"]
    with pytest.raises(BadRequest, match="strings"):
        cast_input(IMAGE, np.array([b"x"], dtype=object))


def test_batches_beyond_the_profile_are_split_and_joined_in_order():
    assert max_batch([IMAGE, MASK]) == 2
    feeds = {"images": np.arange(5)[:, None] * np.ones((5, 2)), "mask": np.arange(5)[:, None]}
    chunks = list(split_batch(feeds, 2))
    assert [c["mask"].ravel().tolist() for c in chunks] == [[0, 1], [2, 3], [4]]
    joined = join_outputs([{"out": c["mask"] * 10} for c in chunks])
    assert joined["out"].ravel().tolist() == [0, 10, 20, 30, 40]
    with pytest.raises(BadRequest, match="batch sizes"):
        list(split_batch({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, 2))


@pytest.mark.skipif(not tensorrt_missing(), reason="TensorRT and a GPU are present here")
def test_loader_says_what_is_missing(tmp_path):
    (tmp_path / "model.plan").write_bytes(b"\0")
    with pytest.raises(ModelLoadError) as info:
        trt_loader.TensorRtModel(tmp_path, 1)
    assert "TensorRT is not installed" in str(info.value)


@pytest.mark.skipif(not tensorrt_missing(), reason="TensorRT and a GPU are present here")
def test_server_refuses_to_start_without_tensorrt(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.plan").write_bytes(b"\0")
    srv = RunningServer("tensorrt", tmp_path, timeout=30)
    with pytest.raises(RuntimeError) as info:
        srv.start()
    assert "exited 1" in str(info.value)
    assert "TensorRT is not installed" in str(info.value)
