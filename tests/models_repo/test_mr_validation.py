"""Format validation: every shared test model validates, broken copies fail with the right
message, and a generated SavedModel and OpenVINO IR validate."""

import io
import json
import struct

import pytest

from models_repo.validation import LocalFolder, StorageFolder, decode_angel_meta, validate_folder
from tests.conftest import require_module
from tests.models_repo.conftest import MODELS, copy_model

pytestmark = pytest.mark.usefixtures("testdata")


def check(fmt, path):
    return validate_folder(fmt, LocalFolder(path))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_shared_test_model_validates(name):
    fmt, path = MODELS[name]
    result = check(fmt, path)
    assert result.ok, result.messages


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shared_models_fail_as_other_formats(name):
    fmt, path = MODELS[name]
    for other in {"saved_model", "pmml", "openvino", "tensorrt", "angel"} - {fmt}:
        assert not check(other, path).ok


def test_angel_version_folder_parent_validates(tmp_path):
    copy_model("angel-lr", tmp_path / "lr-model" / "6")
    assert check("angel", tmp_path / "lr-model").ok


def test_angel_without_graph(tmp_path):
    model = copy_model("angel-lr", tmp_path / "m")
    (model / "graph.json").unlink()
    result = check("angel", model)
    assert not result.ok
    assert "graph.json is missing" in result.summary


def test_angel_meta_that_does_not_decode(tmp_path):
    model = copy_model("angel-deepfm", tmp_path / "m")
    (model / "embedding_embedding" / "meta").write_bytes(struct.pack(">i", 999) + b"{}")
    result = check("angel", model)
    assert "embedding_embedding/meta does not decode" in result.summary
    assert "declares 999 bytes" in result.summary


def test_angel_missing_matrix_data_file(tmp_path):
    model = copy_model("angel-lr", tmp_path / "m")
    (model / "input_weight" / "0").unlink()
    assert "input_weight/0 (named in input_weight/meta) is missing" in check("angel", model).summary


def test_angel_meta_decoder_reads_real_meta():
    _, path = MODELS["angel-lr"]
    meta = decode_angel_meta((path / "input_weight" / "meta").read_bytes())
    assert meta["matrixName"] == "input_weight"


def test_pmml_broken_copies(tmp_path):
    model = copy_model("pmml-lr", tmp_path / "m")
    (model / "second.pmml").write_text("<PMML/>")
    assert "exactly one" in check("pmml", model).summary
    (model / "second.pmml").unlink()
    (model / "LogisticRegressionIris.pmml").write_text("<PMML><unclosed></PMML>")
    assert "not well-formed XML" in check("pmml", model).summary
    (model / "LogisticRegressionIris.pmml").write_text("<Model/>")
    assert "root element <Model>, not <PMML>" in check("pmml", model).summary
    (model / "LogisticRegressionIris.pmml").rename(model / "model.xml")
    assert "no .pmml file" in check("pmml", model).summary


def test_pmml_entity_expansion_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "bomb.pmml").write_text(
        '<?xml version="1.0"?><!DOCTYPE PMML [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        "<PMML>&b;</PMML>"
    )
    assert "forbidden XML feature" in check("pmml", tmp_path / "m").summary


def write_tree(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_saved_model_layouts(tmp_path):
    good = {"saved_model.pb": b"g", "variables/variables.index": b"i"}
    assert check("saved_model", write_tree(tmp_path / "a", good)).ok
    versions = {f"{v}/{k}": d for v in ("1", "2") for k, d in good.items()}
    assert check("saved_model", write_tree(tmp_path / "b", versions)).ok
    text = {"saved_model.pbtxt": b"g", "variables/variables.index": b"i"}
    assert check("saved_model", write_tree(tmp_path / "c", text)).ok
    result = check("saved_model", write_tree(tmp_path / "d", {"saved_model.pb": b"g"}))
    assert result.summary == "Not a valid TensorFlow SavedModel: the variables/ folder is missing."
    broken = {**versions, "3/variables/variables.index": b"i"}
    result = check("saved_model", write_tree(tmp_path / "e", broken))
    assert "3/: saved_model.pb (or saved_model.pbtxt) is missing." in result.summary
    assert "Not a valid" in check("saved_model", write_tree(tmp_path / "f", {"x": b""})).summary


def test_empty_folder(tmp_path):
    assert check("pmml", tmp_path).messages == ["Not a valid PMML: the model folder is empty."]


def test_openvino_rules(tmp_path):
    xml = b'<?xml version="1.0"?><net name="m" version="11"><layers/></net>'
    assert check("openvino", write_tree(tmp_path / "a", {"m.xml": xml, "m.bin": b"w"})).ok
    assert (
        "m.bin is missing beside m.xml"
        in check("openvino", write_tree(tmp_path / "b", {"m.xml": xml, "other.bin": b"w"})).summary
    )
    assert (
        "not well-formed"
        in check("openvino", write_tree(tmp_path / "c", {"m.xml": b"<net", "m.bin": b"w"})).summary
    )
    assert (
        "no OpenVINO IR .xml"
        in check("openvino", write_tree(tmp_path / "d", {"m.bin": b"w"})).summary
    )


def test_tensorrt_rules(tmp_path):
    assert check("tensorrt", write_tree(tmp_path / "a", {"model.plan": b"\x01"})).ok
    assert check("tensorrt", write_tree(tmp_path / "b", {"1/m.engine": b"\x01"})).ok
    assert (
        "model.plan is empty"
        in check("tensorrt", write_tree(tmp_path / "c", {"model.plan": b""})).summary
    )
    assert (
        "no serialized TensorRT engine"
        in check("tensorrt", write_tree(tmp_path / "d", {"model.onnx": b"x"})).summary
    )


def test_validation_reads_through_storage(storage, tmp_path):
    _, path = MODELS["angel-lr"]
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        storage.write(
            storage.test_bucket,
            f"m/{file.relative_to(path).as_posix()}",
            io.BytesIO(file.read_bytes()),
        )
    folder = StorageFolder(storage, storage.test_bucket, "m/")
    assert validate_folder("angel", folder).ok
    assert not validate_folder("pmml", folder).ok


def test_generated_saved_model_validates(tmp_path):
    require_module("tensorflow")
    import tensorflow as tf

    class Model(tf.Module):
        def __init__(self):
            self.w = tf.Variable([[2.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, self.w)

    tf.saved_model.save(Model(), str(tmp_path / "model" / "1"))
    assert check("saved_model", tmp_path / "model").ok
    assert check("saved_model", tmp_path / "model" / "1").ok


def test_generated_openvino_ir_validates(tmp_path):
    require_module("openvino")
    import numpy as np
    import openvino as ov
    import openvino.opset8 as ops

    x = ops.parameter([1, 3], np.float32, name="x")
    model = ov.Model([ops.add(x, ops.constant(np.ones((1, 3), np.float32)))], [x], "m")
    ov.save_model(model, str(tmp_path / "ir" / "model.xml"))
    assert check("openvino", tmp_path / "ir").ok
    (tmp_path / "ir" / "model.bin").unlink()
    assert not check("openvino", tmp_path / "ir").ok


def test_graph_json_must_parse(tmp_path):
    model = copy_model("angel-lr", tmp_path / "m")
    (model / "graph.json").write_text(json.dumps({"nolayers": 1}))
    assert "graph.json has no 'layers' list" in check("angel", model).summary
