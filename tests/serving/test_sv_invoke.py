"""Tokens in the control plane, the invoke API and page, and route publishing (no gateway)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from accounts.models import AuditEvent
from gateway.tokens import decrypt, token_sha256
from serving import access, publish, reconciler, services
from serving.models import Service, ServiceToken
from serving.services import InstanceSize
from tests.factories import PolicyFactory
from tests.serving.conftest import converge, status_is

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)


@pytest.fixture
def service(owner, angel_version, dedicated):
    return services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="tok",
        size=SIZE,
        auth_enabled=True,
    )


def _url(name, service):
    return reverse(name, kwargs={"service_id": service.service_id})


def _reveals(service) -> int:
    return AuditEvent.objects.filter(
        action="ems:DescribeServiceToken", resource=service.resource_name
    ).count()


def test_deploy_with_auth_issues_one_encrypted_token(service, settings):
    token = ServiceToken.objects.get(service=service)
    assert len(token.sha256) == 64 and token.not_after is None and token.revoked_at is None
    clear = decrypt(token.secret, settings.EMS_SECRETS_KEY)
    assert len(clear) == 43 and token_sha256(clear) == token.sha256
    assert clear not in token.secret


def test_invoke_api_shows_the_token_only_with_the_permission(owner, service, make_sub_account):
    answer = owner.api.get(_url("service-invoke", service))
    assert answer.status_code == 200, answer.content
    body = answer.json()
    address = f"http://127.0.0.1:8080/{service.service_id}"
    assert body["address"] == address
    assert body["host_address"] == f"http://{service.service_id}.ems.localhost:8080"
    assert body["token_visible"] and len(body["token"]) == 43
    assert body["curl"] == (
        'curl -H "Content-Type: application/json" -H "x-Auth-Token: '
        f'{body["token"]}" -X POST {address}/v1/models/m:predict -d @flower.json'
    )
    assert _reveals(service) == 1

    policy = PolicyFactory(
        tenant=owner.tenant,
        name="NoTokenView",
        document={
            "version": "1.0",
            "statement": [
                {"effect": "allow", "action": ["ems:Describe*"], "resource": ["*"]},
                {"effect": "deny", "action": ["ems:DescribeServiceToken"], "resource": ["*"]},
            ],
        },
    )
    reader = make_sub_account(policies=[policy.name])
    body = reader.api.get(_url("service-invoke", service)).json()
    assert body["token"] is None and not body["token_visible"]
    assert "TOKEN" in body["curl"] and body["address"] == address
    assert _reveals(service) == 1
    assert reader.api.post(_url("service-token-rotate", service)).status_code == 403
    # the page answers as the API does: its own tenant's service, the action denied -> 403
    page = reader.client.post(_url("serving:service-invoke-token", service))
    assert page.status_code == 403 and b"ems:DescribeServiceToken" in page.content


def test_rotate_keeps_the_old_token_for_the_grace_period_and_revoke_drops_all(
    owner, service, django_capture_on_commit_callbacks
):
    old = access.service_token_reveal(actor=owner.membership, service=service)
    with django_capture_on_commit_callbacks(execute=True):
        answer = owner.api.post(
            _url("service-token-rotate", service), {"grace_seconds": 600}, format="json"
        )
    assert answer.status_code == 200, answer.content
    new = answer.json()["token"]
    assert new != old and len(answer.json()["tokens"]) == 2
    route = publish.store().get(service.service_id)
    assert set(route["token_sha256"]) == {token_sha256(old), token_sha256(new)}
    assert list(route["token_not_after"]) == [token_sha256(old)]
    assert AuditEvent.objects.filter(action="ems:RotateServiceToken").count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        answer = owner.api.post(_url("service-token-revoke", service))
    assert answer.status_code == 200
    fresh = answer.json()["token"]
    route = publish.store().get(service.service_id)
    assert route["token_sha256"] == [token_sha256(fresh)] and fresh not in (old, new)
    assert AuditEvent.objects.filter(action="ems:RevokeServiceToken").count() == 1


def test_switching_auth_on_issues_a_token(owner, angel_version, dedicated):
    plain = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="open", size=SIZE
    )
    assert not plain.tokens.exists()
    with pytest.raises(ValidationError):
        access.service_token_rotate(actor=owner.membership, service=plain)
    answer = owner.api.post(_url("service-auth", plain), {"enabled": True}, format="json")
    assert answer.status_code == 200 and answer.json()["auth_enabled"]
    assert plain.tokens.count() == 1 and answer.json()["token"]


def test_route_follows_the_service_and_store_errors_never_break_reconciling(
    owner, service, settings
):
    good = settings.EMS_GATEWAY_ROUTES
    settings.EMS_GATEWAY_ROUTES = "redis://127.0.0.1:9/0"  # nothing listens: every call fails
    converge(service, status_is(Service.NORMAL), what="Normal without a route store")
    settings.EMS_GATEWAY_ROUTES = good
    assert publish.store().get(service.service_id) is None
    reconciler.reconcile(service.pk)  # a quiet pass repairs the route
    route = publish.store().get(service.service_id)
    running = service.instances.get(state="running")
    assert route["instances"] == [
        {"id": running.instance_id, "url": running.address, "state": "healthy"}
    ]
    generation = route["generation"]
    reconciler.reconcile(service.pk)  # unchanged: not published again
    assert publish.store().get(service.service_id)["generation"] == generation

    services.service_stop(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED))
    assert publish.store().get(service.service_id)["instances"] == []
    services.service_delete(actor=owner.membership, service=service)
    converge(service, lambda s: s.deleted_at is not None)
    reconciler.reconcile(service.pk)
    assert publish.store().get(service.service_id) is None


def test_invoke_page_reveal_and_console_refuse_without_a_gateway(owner, service, settings):
    settings.EMS_GATEWAY_URL = "http://127.0.0.1:9"
    page = owner.client.get(_url("serving:service-invoke", service))
    assert page.status_code == 200
    text = page.content.decode()
    assert f"http://127.0.0.1:9/{service.service_id}" in text
    assert "x-Auth-Token: TOKEN" in text and "-d @flower.json" in text
    assert _reveals(service) == 0  # the page itself never shows the token
    detail = owner.client.get(_url("serving:service-detail", service)).content.decode()
    assert _url("serving:service-invoke", service) in detail
    answer = owner.client.post(_url("serving:service-invoke-token", service))
    assert answer.status_code == 200 and len(answer.json()["token"]) == 43
    assert _reveals(service) == 1
    console = _url("serving:service-invoke-console", service)
    assert owner.client.post(console, {"op": "predict", "body": "{"}).status_code == 400
    answer = owner.client.post(console, {"op": "predict", "body": '{"instances": []}'})
    assert answer.status_code == 200 and answer.json()["status"] == 0
    assert owner.client.post(console, {"op": "other"}).status_code == 400


def test_token_services_check_the_policy(owner, service, make_sub_account):
    reader = make_sub_account(policies=["EMSReadOnlyAccess"])
    with pytest.raises(PermissionDenied):
        access.service_token_revoke(actor=reader.membership, service=service)
    assert access.service_token_reveal(actor=reader.membership, service=service)


def test_sample_body_from_metadata():
    from serving.views_invoke import sample_body

    meta = {
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "image_bytes": {
                                "dtype": "DT_STRING",
                                "tensor_shape": {"dim": [{"size": "-1"}]},
                            }
                        }
                    }
                }
            }
        }
    }
    from serving.views_invoke import SAMPLE_JPEG_B64

    assert sample_body(meta) == {"instances": [{"b64": SAMPLE_JPEG_B64}]}
    meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"] = {
        "a": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "2"}]}},
        "b": {"dtype": "DT_INT64", "tensor_shape": {"dim": [{"size": "-1"}]}},
    }
    assert sample_body(meta) == {"instances": [{"a": [0.0, 0.0], "b": 0}]}
    # a fixed shape is kept whole (a 100-wide input gets 100 numbers, not a cut-off 64)
    meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"] = {
        "x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "100"}]}},
    }
    assert sample_body(meta) == {"instances": [[0.0] * 100]}


def test_instances_are_drained_before_sigterm(owner, angel_version, dedicated, monkeypatch):
    from serving.backends import for_node
    from serving.backends.base import RUNNING

    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="drain",
        size=SIZE,
        scaling=services.Scaling(replicas=2),
    )
    converge(service, status_is(Service.NORMAL))
    seen = []
    drain = publish.drain

    def listener(svc, ids):
        drain(svc, ids)
        route = publish.store().get(svc.service_id)
        for instance in svc.instances.filter(instance_id__in=ids).select_related("node"):
            seen.append(
                (
                    instance.instance_id,
                    instance.state,
                    for_node(instance.node).inspect(instance.instance_id).state,
                    instance.instance_id in {i["id"] for i in route["instances"]},
                )
            )

    monkeypatch.setattr(publish, "drain", listener)  # the reconciler calls publish.drain
    services.service_scale(actor=owner.membership, service=service, replicas=1)
    converge(service, lambda s: s.instances.filter(state="running").count() == 1)
    assert len(seen) == 1
    instance_id, state, backend_state, routed = seen[0]
    assert state == "stopping" and backend_state == RUNNING and not routed
    assert service.instances.get(instance_id=instance_id).state == "stopped"


def test_token_buttons_on_the_invoke_page(owner, service, make_sub_account):
    def act(client, action):
        url = reverse(
            "serving:service-action", kwargs={"service_id": service.service_id, "action": action}
        )
        return client.post(url)

    answer = act(owner.client, "rotate-token")
    assert answer.status_code == 302 and answer.url == _url("serving:service-invoke", service)
    assert service.tokens.filter(not_after__isnull=False).count() == 1
    act(owner.client, "revoke-token")
    assert service.tokens.filter(revoked_at__isnull=True).count() == 1
    act(owner.client, "auth-off")
    service.refresh_from_db()
    assert not service.auth_enabled
    reader = make_sub_account(policies=["EMSReadOnlyAccess"])
    assert act(reader.client, "auth-on").status_code == 403
    service.refresh_from_db()
    assert not service.auth_enabled
