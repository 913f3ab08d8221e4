"""End to end on real containers: the flower classifier behind a real gateway process, called
with the seed's curl line; 401s, stop/resume, rotate/revoke, and zero failed requests while it
updates to 2.0 and scales 1 → 3 → 1 (routes in a file store, as the portal would publish them)."""

from __future__ import annotations

import json

import pytest

from serving import services
from serving.models import Service
from serving.services import InstanceSize
from tests.serving import gateway_flow as flow
from tests.serving.conftest import converge, make_version, status_is

pytestmark = pytest.mark.e2e

SIZE = InstanceSize(cpu_millicores=500, memory_mib=1024)


def _roses(answer) -> bool:
    return answer["predictions"][0]["classes"] == "roses"


def test_flower_through_the_gateway_with_tokens_and_zero_failures(
    owner, docker_group, examples, gateway, django_capture_on_commit_callbacks
):
    body_file = examples / "flower" / "flower.json"
    flower = json.loads(body_file.read_text())
    v1 = make_version(owner, examples / "flower" / "1", name="flower", runtime="tfserving")

    def deploy(name):
        return services.service_deploy(
            actor=owner.membership,
            version=v1,
            group=docker_group,
            name=name,
            size=SIZE,
            auth_enabled=True,
        )

    service, other = deploy("flower"), deploy("other")
    services.service_stop(actor=owner.membership, service=other)
    converge(other, status_is(Service.STOPPED), timeout=60)
    converge(service, flow.normal_with(1), timeout=240, what="Normal")

    token = flow.check_auth_flow(
        owner=owner,
        gateway=gateway,
        service=service,
        other=other,
        body=flower,
        body_file=body_file,
        answer_ok=_roses,
        timeout=240,
    )
    token = flow.check_rotate_revoke(
        owner=owner,
        gateway=gateway,
        service=service,
        body=flower,
        token=token,
        capture=django_capture_on_commit_callbacks,
    )
    v2 = make_version(owner, examples / "flower" / "1", config=v1.config, runtime="tfserving")
    assert v2.label == "2.0"
    served = flow.check_zero_failures(
        owner=owner,
        gateway=gateway,
        service=service,
        body=flower,
        token=token,
        new_version=v2,
        timeout=300,
    )
    assert served > 20
    services.service_delete(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), timeout=120)
    assert flow.call(gateway, service, flower, token=token)[0] == 404
