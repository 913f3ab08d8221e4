"""The operator admin goes through the services: tenant creation (app id + main account),
policies validated with the path-named errors, attachments inside one tenant, member and key
operations, model-repository deletes — each audited with the operator as the actor."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts import testing
from accounts.models import ApiKey, AuditEvent, Membership, Policy, PolicyAttachment, Tenant

GOOD_DOC = {
    "version": "2.0",
    "statement": [{"effect": "allow", "action": ["ems:Describe*"], "resource": ["*"]}],
}


@pytest.fixture
def operator(django_user_model):
    from django.test import Client

    user = django_user_model.objects.create_superuser("op", "op@example.com", "Op-Pass-123!")
    client = Client()
    client.force_login(user)
    return client


def _add_tenant(operator, **fields):
    data = {
        "name": "Acme",
        "username": "acme",
        "email": "acme@example.com",
        "password": "Sturdy-Pass-99!",
    } | fields
    return operator.post(reverse("admin:accounts_tenant_add"), data)


def test_operator_creates_tenants_with_app_id_and_main_account(operator, presets, client):
    assert _add_tenant(operator).status_code == 302
    assert _add_tenant(operator, username="beta", email="beta@example.com").status_code == 302
    tenants = list(Tenant.objects.order_by("created_at"))
    assert len(tenants) == 2 and len({t.app_id for t in tenants}) == 2
    for tenant in tenants:
        assert len(tenant.app_id) == 10 and tenant.app_id.isdigit()
        main = tenant.memberships.get(kind=Membership.MAIN)
        row = AuditEvent.objects.get(tenant=tenant, action="accounts:CreateTenant")
        assert row.actor is None and row.actor_label == "operator op"
        assert row.detail["main_account"] == main.name
    # the main account logs in with the password the operator set
    login = client.post(
        reverse("accounts:login"), {"username": "acme", "password": "Sturdy-Pass-99!"}
    )
    assert login.status_code == 302


def test_tenant_creation_errors_come_from_the_signup_service(operator, presets, owner):
    page = _add_tenant(operator, username=owner.user.username, password="123")
    assert page.status_code == 200
    body = page.content.decode()
    assert "This username is taken." in body
    assert Tenant.objects.count() == 1  # only the owner's


def test_policy_edits_are_validated_with_path_named_errors_and_audited(operator, owner):
    row = Policy.objects.create(tenant=owner.tenant, name="readers", document=GOOD_DOC)
    url = reverse("admin:accounts_policy_change", args=[row.pk])
    bad = {**GOOD_DOC, "statement": [{"effect": "maybe", "action": ["ems:*"], "resource": "*"}]}
    page = operator.post(url, {"name": "readers", "description": "", "document": json.dumps(bad)})
    assert page.status_code == 200
    assert "statement[0].effect" in page.content.decode()
    row.refresh_from_db()
    assert row.document == GOOD_DOC
    page = operator.post(
        url, {"name": "viewers", "description": "d", "document": json.dumps(GOOD_DOC)}
    )
    assert page.status_code == 302
    row.refresh_from_db()
    assert row.name == "viewers"
    audit = AuditEvent.objects.get(tenant=owner.tenant, action="accounts:UpdatePolicy")
    assert audit.actor_label == "operator op"
    # created in a tenant through the same service
    page = operator.post(
        reverse("admin:accounts_policy_add"),
        {
            "tenant": owner.tenant.pk,
            "name": "more",
            "description": "",
            "document": json.dumps(GOOD_DOC),
        },
    )
    assert page.status_code == 302
    assert Policy.objects.filter(tenant=owner.tenant, name="more").exists()
    assert AuditEvent.objects.filter(
        tenant=owner.tenant, action="accounts:CreatePolicy", actor_label="operator op"
    ).exists()


def test_attachments_stay_in_one_tenant(operator, owner, outsider, make_sub_account):
    sub = make_sub_account(name="dev", policies=())
    foreign = Policy.objects.create(tenant=outsider.tenant, name="theirs", document=GOOD_DOC)
    url = reverse("admin:accounts_policyattachment_add")
    page = operator.post(url, {"membership": sub.membership.pk, "policy": foreign.pk})
    assert page.status_code == 200 and "No such policy in this account." in page.content.decode()
    assert not PolicyAttachment.objects.filter(membership=sub.membership).exists()
    own = Policy.objects.create(tenant=owner.tenant, name="ours", document=GOOD_DOC)
    assert (
        operator.post(url, {"membership": sub.membership.pk, "policy": own.pk}).status_code == 302
    )
    attachment = PolicyAttachment.objects.get(membership=sub.membership, policy=own)
    assert AuditEvent.objects.get(
        tenant=owner.tenant, action="accounts:AttachPolicy"
    ).actor_label == ("operator op")
    # detaching is a delete through the service
    page = operator.post(
        reverse("admin:accounts_policyattachment_delete", args=[attachment.pk]),
        {"post": "yes"},
    )
    assert page.status_code == 302
    assert not PolicyAttachment.objects.filter(pk=attachment.pk).exists()
    assert AuditEvent.objects.filter(tenant=owner.tenant, action="accounts:DetachPolicy").exists()


def test_members_are_deleted_through_the_services_and_main_accounts_refused(
    operator, owner, make_sub_account
):
    sub = make_sub_account(name="leaver")
    page = operator.post(
        reverse("admin:accounts_membership_delete", args=[sub.membership.pk]), {"post": "yes"}
    )
    assert page.status_code == 302
    assert not get_user_model().objects.filter(pk=sub.user.pk).exists()
    row = AuditEvent.objects.get(tenant=owner.tenant, action="accounts:DeleteSubAccount")
    assert row.actor_label == "operator op"
    page = operator.post(
        reverse("admin:accounts_membership_delete", args=[owner.membership.pk]),
        {"post": "yes"},
        follow=True,
    )
    assert "delete the tenant" in page.content.decode()
    assert Membership.objects.filter(pk=owner.membership.pk).exists()
    # no add, no edit of rows the tenants own
    assert operator.get(reverse("admin:accounts_membership_add")).status_code == 403
    assert operator.get(reverse("admin:accounts_auditevent_add")).status_code == 403


def test_operator_revokes_api_keys_audited(operator, owner):
    from accounts.services import api_key_create

    key, _ = api_key_create(actor=owner.membership, name="leaked")
    page = operator.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert page.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    row = AuditEvent.objects.get(tenant=owner.tenant, action="ems:DeleteApiKey")
    assert row.actor_label == "operator op"


def test_deleting_an_empty_tenant(operator, presets):
    member = testing.make_tenant(name="gone")
    page = operator.post(
        reverse("admin:accounts_tenant_delete", args=[member.tenant.pk]), {"post": "yes"}
    )
    assert page.status_code == 302
    assert not Tenant.objects.filter(pk=member.tenant.pk).exists()
    assert not get_user_model().objects.filter(pk=member.user.pk).exists()
