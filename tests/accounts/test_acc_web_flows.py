"""Steps 1 and 2 in the web pages: sign up, log in (main and sub), restricted page, authorize,
the tenant switcher, password reset, pages for policies, simulator and audit."""

import pytest
from django.test import Client

from accounts.actor import SESSION_KEY
from accounts.models import Membership, PolicyAttachment, ServiceRoleAuthorization
from accounts.testing import PASSWORD, make_sub_account

pytestmark = pytest.mark.django_db


def test_main_account_signs_up_and_authorizes_in_one_click(presets):
    c = Client()
    assert c.get("/accounts/signup/").status_code == 200
    res = c.post(
        "/accounts/signup/",
        {
            "username": "carol",
            "email": "carol@example.com",
            "password": PASSWORD,
            "tenant_name": "Carol Co",
        },
    )
    assert res.status_code == 302 and res["Location"] == "/accounts/service-role/"
    # the dashboard sends an unauthorized main account to the authorize page
    assert c.get("/accounts/")["Location"] == "/accounts/service-role/"
    page = c.get("/accounts/service-role/").content.decode()
    assert 'name="authorize"' in page and "EMS_ServiceRole" in page
    c.post("/accounts/service-role/", {"op": "authorize"})
    row = ServiceRoleAuthorization.objects.get()
    assert row.authorized_by.user.username == "carol" and row.revoked_at is None
    assert c.get("/accounts/").status_code == 200


def test_weak_password_shows_errors_and_writes_nothing(presets):
    c = Client()
    res = c.post(
        "/accounts/signup/", {"username": "dan", "email": "d@example.com", "password": "dan"}
    )
    assert res.status_code == 200 and "too short" in res.content.decode()
    assert not Membership.objects.exists()


def test_login_main_by_username_or_email_and_sub_by_app_id(owner, make_sub_account):
    dev = make_sub_account(name="bob")
    for username in (owner.user.username, owner.user.email):
        c = Client()
        res = c.post("/accounts/login/", {"username": username, "password": PASSWORD})
        assert res.status_code == 302, username
    c = Client()
    res = c.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert res.status_code == 200  # a sub-account needs the app id
    res = c.post(
        "/accounts/login/", {"app_id": owner.tenant.app_id, "username": "bob", "password": PASSWORD}
    )
    assert res.status_code == 302
    assert c.get("/accounts/").wsgi_request.actor == dev.membership
    c.post("/accounts/logout/")
    assert c.get("/accounts/").status_code == 302


def test_sub_account_without_policy_sees_restricted_page(owner):
    member = make_sub_account(owner.tenant, name="nopol", policies=())
    c = Client()
    c.post(
        "/accounts/login/",
        {"app_id": owner.tenant.app_id, "username": "nopol", "password": PASSWORD},
    )
    res = c.get("/accounts/", follow=True)
    assert res.redirect_chain[-1][0] == "/accounts/restricted/"
    assert "EMSFullAccess" in res.content.decode()
    assert c.get("/accounts/policies/")["Location"] == "/accounts/restricted/"
    assert member.attachments.count() == 0


def test_sub_account_asks_main_unless_it_holds_authorize_role(new_owner):
    plain = make_sub_account(new_owner.tenant, name="plain")
    c = Client()
    c.force_login(plain.user)
    page = c.get("/accounts/service-role/").content.decode()
    assert "Ask your main account" in page and 'name="authorize"' not in page
    c.post("/accounts/service-role/", {"op": "authorize"})
    assert not ServiceRoleAuthorization.objects.exists()
    holder = make_sub_account(new_owner.tenant, name="holder", policies=("EMSAuthorizeRole",))
    c = Client()
    c.force_login(holder.user)
    assert 'name="authorize"' in c.get("/accounts/service-role/").content.decode()
    c.post("/accounts/service-role/", {"op": "authorize"})
    assert ServiceRoleAuthorization.objects.get().authorized_by == holder


def test_tenant_switcher_changes_the_actor(
    owner, outsider, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        owner.api.post("/api/v1/collaborators/", {"email": outsider.user.email}, format="json")
    token = mailoutbox[0].body.rsplit("/invitations/", 1)[1].strip("/")
    c = outsider.client
    c.post(f"/accounts/invitations/{token}/")
    collab = Membership.objects.get(tenant=owner.tenant, user=outsider.user)
    assert collab.status == "accepted"
    page = c.get("/accounts/").content.decode()
    assert 'name="membership"' in page and owner.tenant.app_id in page
    c.post("/accounts/switch/", {"membership": collab.pk})
    assert c.session[SESSION_KEY] == collab.pk
    assert c.get("/accounts/restricted/").wsgi_request.actor == collab
    # switching to a membership that is not yours is a 404
    assert c.post("/accounts/switch/", {"membership": owner.membership.pk}).status_code == 404


def test_password_reset_sends_an_email(owner, mailoutbox):
    res = Client().post("/accounts/password-reset/", {"email": owner.user.email})
    assert res.status_code == 302
    assert len(mailoutbox) == 1 and "/accounts/reset/" in mailoutbox[0].body


def test_pages_for_members_policies_simulator_and_audit(owner):
    c = owner.client
    res = c.post("/accounts/sub-accounts/", {"name": "erin", "password": PASSWORD})
    erin = Membership.objects.get(name="erin")
    assert res["Location"] == f"/accounts/members/{erin.pk}/"
    dup = c.post("/accounts/sub-accounts/", {"name": "erin", "password": PASSWORD})
    assert "already exists" in dup.content.decode()
    bad = c.post("/accounts/policies/", {"name": "x", "document": '{"Statement": [1]}'})
    assert "Statement[0]" in bad.content.decode()
    c.post(
        "/accounts/policies/",
        {
            "name": "ro",
            "document": '{"statement": [{"effect": "allow", '
            '"action": "ems:Describe*", "resource": "*"}]}',
        },
    )
    from accounts.models import Policy

    ro = Policy.objects.get(name="ro")
    c.post(f"/accounts/members/{erin.pk}/", {"op": "attach", "policy": ro.pk})
    assert PolicyAttachment.objects.filter(membership=erin, policy=ro).exists()
    res = c.post(
        "/accounts/simulator/",
        {
            "member": erin.pk,
            "action": "ems:DescribeService",
            "resource": f"ems:*:{owner.tenant.app_id}:service/x",
        },
    )
    body = res.content.decode()
    assert "Allowed" in body and "ro" in body
    audit = c.get("/accounts/audit/?action=AttachPolicy").content.decode()
    assert "accounts:AttachPolicy" in audit and "accounts:CreatePolicy" not in audit
    assert c.get("/accounts/api-keys/").status_code == 200
    res = c.post("/accounts/api-keys/", {"name": "ci"})
    assert 'id="new-key">ems_' in res.content.decode()


def test_tenant_admin_shows_own_rows_only(owner, outsider, make_sub_account):
    mine = make_sub_account(name="mine")
    theirs = make_sub_account(name="theirs", tenant=outsider.tenant)
    page = owner.client.get("/tenant-admin/accounts/membership/").content.decode()
    assert "mine" in page and "theirs" not in page
    url = f"/tenant-admin/accounts/membership/{theirs.membership.pk}/change/"
    assert owner.client.get(url).status_code == 404
    assert (
        owner.client.get(
            f"/tenant-admin/accounts/membership/{mine.membership.pk}/change/"
        ).status_code
        == 200
    )
    add = owner.client.get("/tenant-admin/accounts/policyattachment/add/").content.decode()
    assert "mine" in add and "theirs" not in add
    # sub-accounts do not get the tenant admin
    assert mine.client.get("/tenant-admin/").status_code == 302


def test_tenant_admin_index_has_no_unscoped_recent_actions(owner):
    from django.contrib.admin.models import LogEntry

    assert not LogEntry.objects.exists()
    body = owner.client.get("/tenant-admin/").content.decode()
    assert "Recent actions" not in body and "/accounts/audit/" in body


def test_web_attach_of_another_tenants_policy_is_404_and_writes_nothing(owner, outsider):
    own = make_sub_account(outsider.tenant, name="mine", policies=())
    from accounts.models import Policy

    theirs = Policy.objects.create(
        tenant=owner.tenant,
        name="theirs",
        document={"version": "1.0", "statement": []},
    )
    res = outsider.client.post(
        f"/accounts/members/{own.pk}/", {"op": "attach", "policy": theirs.pk}
    )
    assert res.status_code == 404
    assert not own.attachments.exists()


def test_restricted_member_is_sent_to_the_restricted_page_from_any_page(owner):
    member = make_sub_account(owner.tenant, name="nopol2", policies=())
    c = Client()
    c.force_login(member.user)
    assert c.get("/accounts/audit/")["Location"] == "/accounts/restricted/"
    assert c.get("/accounts/restricted/").status_code == 200
    assert c.get("/").status_code == 200


def test_tenant_admin_policy_add_validates_name_and_document(owner):
    url = "/tenant-admin/accounts/policy/add/"
    doc = '{"statement": [{"effect": "allow", "action": "ems:*", "resource": "*"}]}'
    res = owner.client.post(url, {"name": "EMSFullAccess", "description": "", "document": doc})
    assert res.status_code == 200 and "already exists" in res.content.decode()
    res = owner.client.post(url, {"name": "p1", "description": "", "document": '{"x": 1}'})
    assert res.status_code == 200 and "unknown key" in res.content.decode()
    res = owner.client.post(url, {"name": "p1", "description": "", "document": doc})
    assert res.status_code == 302
    from accounts.models import AuditEvent, Policy

    assert Policy.objects.get(name="p1").tenant == owner.tenant
    assert AuditEvent.objects.filter(action="accounts:CreatePolicy", tenant=owner.tenant).exists()


def test_restricted_page_is_asked_again_on_every_load(owner):
    """Once the main account attaches a policy, the restricted page sends the member on."""
    from accounts.testing import attach

    member = make_sub_account(owner.tenant, name="waiting", policies=())
    c = Client()
    c.post(
        "/accounts/login/",
        {"app_id": owner.tenant.app_id, "username": "waiting", "password": PASSWORD},
    )
    assert c.get("/accounts/restricted/").status_code == 200
    attach(member, "EMSFullAccess")
    answer = c.get("/accounts/restricted/")
    assert (answer.status_code, answer["Location"]) == (302, "/accounts/")
    assert c.get("/accounts/").status_code == 200


def test_tenant_admin_tells_a_logged_in_sub_account_it_is_for_the_main_account(sub_account):
    answer = sub_account.client.get("/tenant-admin/", follow=True)
    body = answer.content.decode()
    assert answer.status_code == 403 and "for the main account only" in body
    assert 'name="password"' not in body  # no login form for someone logged in


def test_signup_page_shows_the_password_rules_before_the_first_try(client):
    page = client.get("/accounts/signup/").content.decode()
    assert "at least" in page.lower() and "<li>" in page  # the validators' own help, as a list
