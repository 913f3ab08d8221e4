"""The operator suspends and reinstates a tenant through the real admin pages: its services
stop (through the stop service, audited as the platform), its endpoints answer 403 with the
reason at a real gateway, its logins and API keys are refused; deleting a tenant or a group
with running services is refused with a message."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts import services as account_services
from accounts import testing
from accounts.models import AuditEvent, Tenant
from serving import access, publish
from serving.models import ResourceGroup, Service
from tests.gateway.conftest import PREDICT_BODY
from tests.serving import gateway_flow as flow
from tests.serving.conftest import converge, status_is
from tests.serving.test_sv_gateway_flow import _deploy

PREDICT = "/v1/models/m:predict"
REASON = "unpaid bills since March"


@pytest.fixture
def operator(django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_superuser("op", "op@example.com", "Op-Pass-123!")
    client = Client()
    client.force_login(user)
    return client


def _action(operator, action, tenant, **extra):
    return operator.post(
        reverse("admin:accounts_tenant_changelist"),
        {"action": action, "_selected_action": [tenant.pk], **extra},
        follow=True,
    )


def test_suspend_stops_services_refuses_endpoints_logins_keys_then_reinstate(
    owner,
    operator,
    angel_version,
    dedicated,
    gateway,
    django_capture_on_commit_callbacks,
):
    from rest_framework.test import APIClient

    service = _deploy(owner, angel_version, dedicated, "lr", auth=True)
    converge(service, flow.normal_with(1), what="Normal")
    gateway.wait_generation(publish.store().generation(), timeout=30)  # the route has landed
    token = access.service_token_reveal(actor=owner.membership, service=service)
    headers = {"x-Auth-Token": token}
    assert (
        gateway.request("POST", f"/{service.service_id}{PREDICT}", PREDICT_BODY, headers)[0] == 200
    )
    _, raw_key = account_services.api_key_create(actor=owner.membership, name="ci")

    # an empty reason is refused with a message, nothing changes
    page = _action(operator, "suspend", owner.tenant, reason="")
    assert "Say why the account is suspended" in page.content.decode()
    assert not Tenant.objects.get(pk=owner.tenant.pk).is_suspended

    with django_capture_on_commit_callbacks(execute=True):
        page = _action(operator, "suspend", owner.tenant, reason=REASON)
    assert page.status_code == 200 and "suspended." in page.content.decode()
    tenant = Tenant.objects.get(pk=owner.tenant.pk)
    assert tenant.is_suspended and tenant.suspension_reason == REASON

    # the endpoint answers 403 with the reason at once (the route is republished)
    gateway.wait_generation(publish.store().generation())
    status, _, body = gateway.request(
        "POST", f"/{service.service_id}{PREDICT}", PREDICT_BODY, headers
    )
    assert status == 403 and REASON in body["error"] and tenant.app_id in body["error"]
    # the service was stopped through the stop service, on a system path
    service.refresh_from_db()
    assert service.desired == Service.STOP
    converge(service, status_is(Service.STOPPED), what="stopped")
    stop_row = AuditEvent.objects.get(tenant=tenant, action="ems:StopService")
    assert stop_row.actor is None and "tenant suspended by operator op" in stop_row.actor_label
    suspend_row = AuditEvent.objects.get(tenant=tenant, action="accounts:SuspendTenant")
    assert suspend_row.actor_label == "operator op" and suspend_row.detail["reason"] == REASON
    assert publish.store().get(service.service_id)["refuse"]

    # logins and API keys are refused with a clear message
    from django.test import Client

    login = Client().post(
        reverse("accounts:login"), {"username": owner.user.username, "password": testing.PASSWORD}
    )
    assert login.status_code == 200 and "is suspended" in login.content.decode()
    assert REASON in login.content.decode()
    api = APIClient()
    answer = api.get("/api/v1/services/", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert answer.status_code == 403 and REASON in answer.json()["detail"]
    # an open session has no actor in the suspended tenant any more
    assert owner.api.get("/api/v1/services/").status_code == 403

    # deleting the tenant with a service that is not deleted is refused with a message
    page = operator.post(
        reverse("admin:accounts_tenant_delete", args=[tenant.pk]), {"post": "yes"}, follow=True
    )
    assert (
        "cannot be deleted" in page.content.decode() and service.service_id in page.content.decode()
    )
    assert Tenant.objects.filter(pk=tenant.pk).exists()

    # reinstate: logins, keys and the endpoint's route work again (the service stays stopped)
    with django_capture_on_commit_callbacks(execute=True):
        page = _action(operator, "reinstate", tenant)
    assert "reinstated." in page.content.decode()
    assert not Tenant.objects.get(pk=tenant.pk).is_suspended
    assert "refuse" not in publish.store().get(service.service_id)
    gateway.wait_generation(publish.store().generation())
    status, _, body = gateway.request(
        "POST", f"/{service.service_id}{PREDICT}", PREDICT_BODY, headers
    )
    assert status == 503  # stopped: no instance, no refusal
    assert api.get("/api/v1/services/", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 200
    login = Client().post(
        reverse("accounts:login"), {"username": owner.user.username, "password": testing.PASSWORD}
    )
    assert login.status_code == 302
    assert AuditEvent.objects.filter(tenant=tenant, action="accounts:ReinstateTenant").exists()


def test_deleting_a_group_with_services_is_refused_then_done(
    owner, operator, angel_version, dedicated
):
    service = _deploy(owner, angel_version, dedicated, "lr", auth=False)
    url = reverse("admin:serving_resourcegroup_delete", args=[dedicated.pk])
    page = operator.post(url, {"post": "yes"}, follow=True)
    assert (
        "still runs services" in page.content.decode()
        and service.service_id in page.content.decode()
    )
    assert ResourceGroup.objects.filter(pk=dedicated.pk).exists()

    empty = ResourceGroup.objects.create(
        tenant=owner.tenant, name="spare", region=dedicated.region, kind=ResourceGroup.DEDICATED
    )
    url = reverse("admin:serving_resourcegroup_delete", args=[empty.pk])
    page = operator.post(url, {"post": "yes"}, follow=True)
    assert page.status_code == 200 and not ResourceGroup.objects.filter(pk=empty.pk).exists()
    row = AuditEvent.objects.get(tenant=owner.tenant, action="ems:DeleteResourceGroup")
    assert row.actor_label == "operator op"
    from django.contrib.admin.models import DELETION, LogEntry

    entry = LogEntry.objects.get(object_id=str(empty.pk), content_type__model="resourcegroup")
    assert entry.action_flag == DELETION and entry.user.username == "op" and "spare" in str(entry)


def test_model_repository_deletes_go_through_the_services_audited(
    owner, operator, angel_version, dedicated
):
    from models_repo.models import ModelConfig, ModelConfigVersion
    from tests.serving.conftest import ANGEL_VERSION_DIR, make_version
    from tests.serving.helpers import angel_model

    _deploy(owner, angel_version, dedicated, "lr", auth=False)
    spare = make_version(owner, angel_model() / ANGEL_VERSION_DIR, config=angel_version.config)
    config = angel_version.config
    # the config has a version in use: refused with the reason
    page = operator.post(
        reverse("admin:models_repo_modelconfig_delete", args=[config.pk]),
        {"post": "yes"},
        follow=True,
    )
    assert "is in use" in page.content.decode()
    assert ModelConfig.objects.filter(pk=config.pk).exists()
    # an unused version is deleted through the service, audited with the operator
    page = operator.post(
        reverse("admin:models_repo_modelconfigversion_delete", args=[spare.pk]),
        {"post": "yes"},
    )
    assert page.status_code == 302
    assert not ModelConfigVersion.objects.filter(pk=spare.pk).exists()
    row = AuditEvent.objects.get(tenant=owner.tenant, action="ems:DeleteModelConfigVersion")
    assert row.actor_label == "operator op" and row.detail["version"] == spare.label
