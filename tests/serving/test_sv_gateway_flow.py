"""The invoke flow on the process backend with the file route store (default run): a real
gateway process in front of real runtime processes, routes published by the reconciler."""

from __future__ import annotations

import json

import pytest

from serving import publish, services
from serving.models import Service
from serving.services import InstanceSize
from tests.gateway.conftest import PREDICT_BODY
from tests.serving import gateway_flow as flow
from tests.serving.conftest import ANGEL_VERSION_DIR, converge, make_version, status_is
from tests.serving.helpers import angel_lr_variant, angel_model, lr_reference

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)


def _lr_ok(answer) -> bool:
    return isinstance(answer, dict) and len(answer.get("predictions", [])) == 1


def _deploy(owner, version, group, name, auth=True):
    return services.service_deploy(
        actor=owner.membership,
        version=version,
        group=group,
        name=name,
        size=SIZE,
        auth_enabled=auth,
    )


def test_invoke_flow_through_the_gateway_on_processes(
    owner, angel_version, dedicated, gateway, serving_env, django_capture_on_commit_callbacks
):
    body_file = serving_env / "flower.json"  # the seed's file name; an Angel LR body here
    body_file.write_text(json.dumps(PREDICT_BODY))
    service = _deploy(owner, angel_version, dedicated, "lr")
    other = _deploy(owner, angel_version, dedicated, "other")
    services.service_stop(actor=owner.membership, service=other)
    converge(other, status_is(Service.STOPPED), what="other stopped")
    converge(service, flow.normal_with(1), what="Normal")
    route = publish.store().get(service.service_id)
    assert route["auth"] and len(route["token_sha256"]) == 1
    assert [i["state"] for i in route["instances"]] == ["healthy"]

    token = flow.check_auth_flow(
        owner=owner,
        gateway=gateway,
        service=service,
        other=other,
        body=PREDICT_BODY,
        body_file=body_file,
        answer_ok=_lr_ok,
    )
    token = flow.check_rotate_revoke(
        owner=owner,
        gateway=gateway,
        service=service,
        body=PREDICT_BODY,
        token=token,
        capture=django_capture_on_commit_callbacks,
    )
    # 2.0 has different weights: after the update the gateway must serve its answers
    v2_dir = angel_lr_variant(serving_env / "lr-v2", bias=4.0)
    v2 = make_version(owner, v2_dir / ANGEL_VERSION_DIR, config=angel_version.config)
    assert v2.label == "2.0"
    indices = PREDICT_BODY["instances"][0]["sparseIndices"]
    v1_pred, v2_pred = lr_reference(angel_model(), indices), lr_reference(v2_dir, indices)
    assert abs(v2_pred - v1_pred) > 1.0
    flow.check_zero_failures(
        owner=owner,
        gateway=gateway,
        service=service,
        body=PREDICT_BODY,
        token=token,
        new_version=v2,
        new_answer_ok=lambda a: a["predictions"][0]["pred"] == pytest.approx(v2_pred, rel=1e-5),
    )

    # delete: the route is gone, callers get 404
    services.service_delete(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), what="deleted")
    flow.settle(gateway)
    assert publish.store().get(service.service_id) is None
    assert flow.call(gateway, service, PREDICT_BODY, token=token)[0] == 404
