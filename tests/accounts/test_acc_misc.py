"""Service-role error pages, bootstrap, catalogue rules, list query counts, scoping."""

import io

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import RequestFactory

from accounts import catalogue
from accounts.actor import ActorMiddleware
from accounts.api.exceptions import exception_handler
from accounts.errors import ServiceRoleNotAuthorized
from accounts.models import Membership, Policy
from accounts.testing import make_sub_account

pytestmark = pytest.mark.django_db


def test_service_role_error_becomes_a_page_with_the_authorize_link(owner):
    request = RequestFactory().get("/models/")
    request.user, request.actor = owner.user, owner.membership
    request.session = {}
    response = ActorMiddleware(lambda r: None).process_exception(
        request, ServiceRoleNotAuthorized(owner.tenant)
    )
    assert response.status_code == 403
    assert 'href="/accounts/service-role/"' in response.content.decode()


def test_service_role_error_in_the_api_is_403_with_code_and_link():
    response = exception_handler(ServiceRoleNotAuthorized(), {})
    assert response.status_code == 403
    assert response.data["code"] == "service_role_not_authorized"
    assert response.data["authorize_url"] == "/accounts/service-role/"


def test_bootstrap_writes_presets_and_demo_tenant_idempotently(settings):
    settings.DEBUG = True
    for _ in range(2):
        out = io.StringIO()
        call_command("ems_bootstrap", "--demo", stdout=out)
    assert "demo tenant" in out.getvalue()
    assert Policy.objects.filter(tenant__isnull=True).count() == 7
    assert Membership.objects.filter(user__username="demo", kind="main").count() == 1


def test_register_actions_adds_but_never_redefines():
    catalogue.register_actions("test", [catalogue.Action("ems:TestOnlyThing", "x")])
    catalogue.register_actions("test", [{"name": "ems:TestOnlyThing", "description": "x"}])
    with pytest.raises(ImproperlyConfigured):
        catalogue.register_actions("test", [catalogue.Action("ems:TestOnlyThing", "other")])
    with pytest.raises(ImproperlyConfigured):
        catalogue.Action("ems:bad*", "x")


def test_sub_account_list_query_count_is_flat(owner, django_assert_max_num_queries):
    for i in range(3):
        make_sub_account(owner.tenant, name=f"q{i}")
    owner.api.get("/api/v1/sub-accounts/")  # warm-up (session, content types)
    with django_assert_max_num_queries(8) as small:
        owner.api.get("/api/v1/sub-accounts/")
    for i in range(3, 12):
        make_sub_account(owner.tenant, name=f"q{i}")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert owner.api.get("/api/v1/sub-accounts/").json()["count"] == 12


def test_for_actor_is_the_choke_point(owner, outsider, sub_account):
    assert set(Membership.objects.for_actor(owner.membership, "accounts:ListSubAccounts")) == {
        owner.membership,
        sub_account.membership,
    }
    assert not Membership.objects.for_actor(None, "accounts:ListSubAccounts").exists()
    # EMSFullAccess grants nothing in the accounts namespace
    assert not Membership.objects.for_actor(
        sub_account.membership, "accounts:ListSubAccounts"
    ).exists()
    presets = Policy.objects.for_actor(outsider.membership, "accounts:ListPolicies")
    assert presets.filter(tenant__isnull=True).count() == 7


def test_pending_collaborator_is_no_actor(owner, outsider):
    from accounts import authz

    pending = Membership.objects.create(
        tenant=owner.tenant, user=outsider.user, kind="collaborator", name="x", status="pending"
    )
    assert not authz.is_allowed(pending, "ems:DescribeServices", "*")
    assert outsider.api.get("/api/v1/sub-accounts/").wsgi_request.actor == outsider.membership
