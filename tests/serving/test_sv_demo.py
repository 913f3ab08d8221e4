"""The demo that `make run` prepares: the demo tenant is ready (role, bucket, a config per
example model), the dashboard leads to a one-click deploy, and the flower example answers the
seed's flower.json with roses."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command

from accounts.bootstrap import DEMO_PASSWORD, DEMO_USER, demo_member
from accounts.service_role import is_authorized
from models_repo import demo
from models_repo.models import ModelConfig, ModelConfigVersion
from serving import services
from serving.models import ResourceGroup, Service
from tests.serving.conftest import cleanup_group, converge, status_is
from tests.serving.helpers import get_json, post_json

pytestmark = pytest.mark.integration


@pytest.fixture
def demo_env(serving_env, settings, examples):
    """The bootstrap's generated examples come from the session's `examples` folder, so
    TensorFlow trains the flower model once per test run."""
    settings.DEBUG = True
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    (settings.DATA_DIR / "examples").symlink_to(examples)
    for name in ("flower", "openvino"):
        (examples / name / ".done").write_text("ok\n")
    out = io.StringIO()
    call_command("ems_bootstrap", "--demo", stdout=out)
    call_command("ems_bootstrap", "--demo", stdout=io.StringIO())  # idempotent
    yield out.getvalue()
    for group in ResourceGroup.objects.filter(kind=ResourceGroup.PUBLIC):
        cleanup_group(group)


def test_demo_tenant_is_ready(demo_env):
    member = demo_member()
    assert is_authorized(member.tenant)
    configs = ModelConfig.objects.filter(tenant=member.tenant)
    assert sorted(configs.values_list("name", flat=True)) == sorted(e.config for e in demo.EXAMPLES)
    for example in demo.EXAMPLES:
        version = ModelConfigVersion.objects.get(config__name=example.config, number=1)
        assert version.runtime.name == example.runtime
        assert version.validation_status == ModelConfigVersion.PASSED, version.validation_messages
        assert version.bucket == f"{demo.DEMO_BUCKET}-{member.tenant.app_id}"
    assert "demo config flowers (tfserving)" in demo_env


def test_dashboard_leads_to_a_one_click_deploy(demo_env, client):
    assert client.login(username=DEMO_USER, password=DEMO_PASSWORD)
    page = client.get("/accounts/").content.decode()
    assert "Getting started" in page
    links = re.findall(r'href="(/services/new/\?version=(\d+)&amp;name=([\w-]+))"', page)
    assert {name for _, _, name in links} == {e.config for e in demo.EXAMPLES}
    url, version_id, _ = next(link for link in links if link[2] == "flowers")
    form = client.get(url.replace("&amp;", "&")).content.decode()
    assert re.search(rf'<option value="{version_id}" selected>', form)
    flowers = ModelConfig.objects.get(name="flowers")
    assert re.search(rf'<option value="{flowers.region.name}" selected>', form)


def test_flower_example_answers_roses(demo_env, examples):
    member = demo_member()
    version = ModelConfigVersion.objects.get(config__name="flowers", number=1)
    group = ResourceGroup.objects.get(kind=ResourceGroup.PUBLIC, region=version.config.region)
    service = services.service_deploy(
        actor=member,
        version=version,
        group=group,
        name="flowers",
        size=services.InstanceSize(quota_type="cpu", quota_count=1),
        scaling=services.Scaling(replicas=1),
        auth_enabled=True,
    )
    service = converge(service, status_is(Service.NORMAL), timeout=240, what="Normal")
    instance = service.instances.get(state="running")
    request = json.loads((examples / "flower" / "flower.json").read_text())
    answer = post_json(f"{instance.address}/v1/models/m:predict", request)
    (prediction,) = answer["predictions"]
    assert prediction["classes"] == "roses"
    assert max(prediction["probabilities"]) == prediction["probabilities"][prediction["class_idx"]]
    # the invoke console's "sample from metadata" is a request this model accepts
    from serving.views_invoke import sample_body

    metadata = get_json(f"{instance.address}/v1/models/m/metadata")
    sampled = post_json(f"{instance.address}/v1/models/m:predict", sample_body(metadata))
    assert sampled["predictions"][0]["classes"] in (
        "daisy",
        "dandelion",
        "roses",
        "sunflowers",
        "tulips",
    )
    services.service_stop(actor=member, service=service)
