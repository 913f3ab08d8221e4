"""``python -m runtimes.examples``: the flower classifier answers like the seed."""

from __future__ import annotations

import base64
import json

import pytest

from runtimes.examples.flower import CLASSES
from runtimes.testing import RunningServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flower(examples_dir):
    with RunningServer("tfserving", examples_dir / "flower", threads=2) as srv:
        yield srv


def test_layout(examples_dir):
    assert (examples_dir / "flower/1/saved_model.pb").is_file()
    assert (examples_dir / "flower/flower.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert (examples_dir / "openvino/1/model.xml").is_file()
    assert (examples_dir / "openvino/1/model.bin").is_file()
    assert list((examples_dir / "pmml/1").glob("*.pmml"))


def test_flower_json_answers_roses(flower, examples_dir):
    request = json.loads((examples_dir / "flower/flower.json").read_text())
    status, body = flower.request("POST", "/v1/models/m:predict", request)
    assert status == 200
    (pred,) = body["predictions"]
    assert set(pred) == {"class_idx", "probabilities", "classes"}
    assert pred["class_idx"] == 2 and pred["classes"] == "roses"
    assert len(pred["probabilities"]) == 5
    assert sum(pred["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert max(pred["probabilities"]) == pred["probabilities"][2]


def test_every_colour_gets_its_class(flower, examples_dir):
    instances = [
        {"b64": base64.b64encode((examples_dir / f"flower/sample_{c}.jpg").read_bytes()).decode()}
        for c in CLASSES
    ]
    status, body = flower.request("POST", "/v1/models/m:predict", {"instances": instances})
    assert status == 200
    assert [p["classes"] for p in body["predictions"]] == list(CLASSES)
    assert [p["class_idx"] for p in body["predictions"]] == list(range(5))
    probabilities = {tuple(p["probabilities"]) for p in body["predictions"]}
    assert len(probabilities) == 5  # different JPEGs, different answers


def test_undecodable_image_is_400(flower):
    status, body = flower.request(
        "POST", "/v1/models/m:predict", {"instances": [{"b64": base64.b64encode(b"nope").decode()}]}
    )
    assert status == 400
    assert "image" in body["error"].lower() or "jpeg" in body["error"].lower()
