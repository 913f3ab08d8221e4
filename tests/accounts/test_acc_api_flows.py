"""Step 1 and 2 over the API: sign up, keys, service role, sub-accounts, policies, audit."""

import base64

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEvent, Membership, Policy, Tenant
from accounts.testing import PASSWORD

pytestmark = pytest.mark.django_db


def basic(username, password=PASSWORD):
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def signup(api, username="alice", email="alice@example.com", password=PASSWORD):
    return api.post(
        "/api/v1/auth/signup/",
        {"username": username, "email": email, "password": password},
        format="json",
    )


def test_signup_then_first_key_by_basic_then_everything_by_bearer(presets):
    api = APIClient()
    res = signup(api)
    assert res.status_code == 201, res.json()
    app_id = res.json()["app_id"]
    assert len(app_id) == 10 and app_id.isdigit()
    tenant = Tenant.objects.get(app_id=app_id)
    assert Membership.objects.get(tenant=tenant).kind == "main"

    res = api.post("/api/v1/auth/api-keys/", {"name": "ci"}, format="json", **basic("alice"))
    assert res.status_code == 201, res.content
    raw = res.json()["key"]
    key = ApiKey.objects.get()
    assert raw not in key.key_hash and key.key_hash != raw
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    listing = bearer.get("/api/v1/auth/api-keys/").json()["results"]
    assert [k["name"] for k in listing] == ["ci"] and "key" not in listing[0]
    assert ApiKey.objects.get().last_used_at is not None

    # step 2: not authorized -> model actions refused with a link; account actions allowed
    status = bearer.get("/api/v1/service-role/").json()
    assert status["authorized"] is False and status["authorize_url"] == "/accounts/service-role/"
    res = bearer.post("/api/v1/sub-accounts/", {"name": "bob", "password": PASSWORD}, format="json")
    assert res.status_code == 201, res.content
    assert bearer.post("/api/v1/service-role/authorize/").json()["authorized"] is True
    assert (
        AuditEvent.objects.filter(action="accounts:AuthorizeServiceRole", tenant=tenant).count()
        == 1
    )

    # revoke the key: it stops working
    bearer.delete(f"/api/v1/auth/api-keys/{key.pk}/")
    assert bearer.get("/api/v1/sub-accounts/").status_code == 401


def test_bad_bearer_key_is_401():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Bearer ems_nope_nope")
    assert api.get("/api/v1/sub-accounts/").status_code == 401


def test_signup_refuses_weak_password_and_duplicates(presets):
    api = APIClient()
    res = signup(api, password="123")
    assert res.status_code == 400 and "password" in res.json()
    assert not Tenant.objects.exists()
    assert signup(api).status_code == 201
    assert "username" in signup(api, email="other@example.com").json()
    assert "email" in signup(api, username="alice2").json()
    assert Tenant.objects.count() == 1


def test_sub_account_without_authorize_role_is_told_to_ask(new_owner, make_sub_account):
    dev = make_sub_account(policies=("EMSFullAccess",), tenant=new_owner.tenant)
    res = dev.api.post("/api/v1/service-role/authorize/")
    assert res.status_code == 403
    assert dev.api.get("/api/v1/service-role/").status_code == 403  # not even describe
    holder = make_sub_account(policies=("EMSAuthorizeRole",), tenant=new_owner.tenant)
    assert holder.api.post("/api/v1/service-role/authorize/").json()["authorized"] is True


def test_revoke_blocks_model_actions(owner):
    from accounts import authz
    from accounts.errors import ServiceRoleNotAuthorized

    assert owner.api.post("/api/v1/service-role/revoke/").status_code == 200
    with pytest.raises(ServiceRoleNotAuthorized):
        authz.check(
            owner.membership, "ems:CreateService", authz.resource_name(owner.tenant, "service", "*")
        )


def test_sub_account_crud_and_duplicate_names(owner):
    res = owner.api.post(
        "/api/v1/sub-accounts/", {"name": "bob", "password": PASSWORD}, format="json"
    )
    bob = res.json()["id"]
    dup = owner.api.post(
        "/api/v1/sub-accounts/", {"name": "bob", "password": PASSWORD}, format="json"
    )
    assert dup.status_code == 400 and "already exists" in dup.json()["name"][0]
    weak = owner.api.post(
        "/api/v1/sub-accounts/", {"name": "eve", "password": "password"}, format="json"
    )
    assert weak.status_code == 400 and "password" in weak.json()
    assert not Membership.objects.filter(name="eve").exists()
    res = owner.api.patch(f"/api/v1/sub-accounts/{bob}/", {"is_active": False}, format="json")
    assert res.json()["is_active"] is False
    assert owner.api.delete(f"/api/v1/sub-accounts/{bob}/").status_code == 204


def test_policies_create_validate_attach_detach(owner, make_sub_account):
    dev = make_sub_account(policies=())
    bad = owner.api.post(
        "/api/v1/policies/",
        {
            "name": "p",
            "document": {
                "Statement": [
                    {"Effect": "Allow", "Action": "ems:*", "Resource": "*"},
                    {"Effect": "Allow", "Action": ["ems:Nope"], "Resource": "*"},
                ]
            },
        },
        format="json",
    )
    assert bad.status_code == 400
    assert "Statement[1].Action[0]" in bad.json()["document"][0]
    res = owner.api.post(
        "/api/v1/policies/",
        {
            "name": "readers",
            "document": {
                "statement": [{"effect": "allow", "action": "ems:Describe*", "resource": "*"}]
            },
        },
        format="json",
    )
    assert res.status_code == 201
    pid = res.json()["id"]
    dup = owner.api.post(
        "/api/v1/policies/",
        {
            "name": "EMSFullAccess",
            "document": {"statement": [{"effect": "allow", "action": "ems:*", "resource": "*"}]},
        },
        format="json",
    )
    assert dup.status_code == 400
    url = f"/api/v1/sub-accounts/{dev.membership.pk}/policies/"
    assert owner.api.post(url, {"policy": pid}, format="json").status_code == 201
    assert owner.api.post(url, {"policy": pid}, format="json").status_code == 400
    assert [a["policy_name"] for a in owner.api.get(url).json()] == ["readers"]
    assert owner.api.delete(f"{url}{pid}/").status_code == 204
    assert owner.api.get(url).json() == []
    preset = Policy.objects.get(name="EMSFullAccess")
    assert (
        owner.api.patch(
            f"/api/v1/policies/{preset.pk}/", {"description": "x"}, format="json"
        ).status_code
        == 400
    )


def test_attaching_another_tenants_policy_is_refused(owner, outsider, make_sub_account):
    dev = make_sub_account(policies=())
    theirs = outsider.api.post(
        "/api/v1/policies/",
        {
            "name": "theirs",
            "document": {"statement": [{"effect": "allow", "action": "ems:*", "resource": "*"}]},
        },
        format="json",
    )
    res = owner.api.post(
        f"/api/v1/sub-accounts/{dev.membership.pk}/policies/",
        {"policy": theirs.json()["id"]},
        format="json",
    )
    assert res.status_code == 400 and "policy" in res.json()
    assert not dev.membership.attachments.exists()


def test_read_only_sub_account_lists_but_every_write_is_403(owner, make_sub_account):
    reader = make_sub_account(policies=("EMSReadOnlyAccess", "BillingReadOnlyAccess"))
    victim = make_sub_account(policies=())
    pid = Policy.objects.get(name="EMSFullAccess").pk
    assert reader.api.get("/api/v1/auth/api-keys/").status_code == 200
    writes = [
        ("post", "/api/v1/auth/api-keys/", {"name": "k"}),
        ("post", "/api/v1/service-role/authorize/", {}),
        ("post", "/api/v1/service-role/revoke/", {}),
        (
            "put",
            "/api/v1/service-role/storage-credentials/",
            {"access_key_id": "a", "secret_access_key": "b"},
        ),
        ("post", "/api/v1/sub-accounts/", {"name": "x", "password": PASSWORD}),
        ("post", "/api/v1/collaborators/", {"email": "x@example.com"}),
        ("post", "/api/v1/policies/", {"name": "x", "document": {"statement": []}}),
    ]
    for method, url, body in writes:
        res = getattr(reader.api, method)(url, body, format="json")
        assert res.status_code == 403, (method, url, res.status_code)
    # member objects are not even listable without accounts:* -> 403 on the collection
    assert reader.api.get("/api/v1/sub-accounts/").status_code == 403
    # an object of its tenant it cannot even read: 403 naming the action (IAM), not a 404
    res = reader.api.delete(f"/api/v1/policies/{pid}/")
    assert res.status_code == 403 and res.json()["action"] == "accounts:DeletePolicy"
    assert victim.membership.attachments.count() == 0


def test_account_reader_lists_members_but_cannot_write_them(owner, make_sub_account):
    from accounts.testing import attach

    reader = make_sub_account(policies=("EMSReadOnlyAccess",))
    Policy.objects.create(
        tenant=owner.tenant,
        name="acct-read",
        document={
            "version": "1.0",
            "statement": [
                {
                    "effect": "allow",
                    "action": ["accounts:List*", "accounts:Describe*"],
                    "resource": ["*"],
                }
            ],
        },
    )
    attach(reader.membership, "acct-read")
    other = make_sub_account(policies=())
    assert reader.api.get("/api/v1/sub-accounts/").status_code == 200
    mid = other.membership.pk
    assert reader.api.get(f"/api/v1/sub-accounts/{mid}/").status_code == 200
    for method in ("patch", "delete"):
        res = getattr(reader.api, method)(
            f"/api/v1/sub-accounts/{mid}/", {"is_active": False}, format="json"
        )
        assert res.status_code == 403
    pid = Policy.objects.get(name="EMSFullAccess").pk
    assert (
        reader.api.post(
            f"/api/v1/sub-accounts/{mid}/policies/", {"policy": pid}, format="json"
        ).status_code
        == 403
    )
    assert AuditEvent.objects.filter(outcome="denied", action="accounts:AttachPolicy").exists()


def test_collaborator_invitation_same_answer_and_accept(
    owner, outsider, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        a = owner.api.post("/api/v1/collaborators/", {"email": outsider.user.email}, format="json")
        b = owner.api.post("/api/v1/collaborators/", {"email": "nobody@example.com"}, format="json")
    assert a.status_code == b.status_code == 202 and a.json() == b.json()
    assert len(mailoutbox) == 1
    token = mailoutbox[0].body.rsplit("/invitations/", 1)[1].strip("/")
    assert outsider.api.get("/api/v1/collaborators/").json()["count"] == 0
    res = outsider.api.post("/api/v1/collaborators/accept/", {"token": token}, format="json")
    assert res.status_code == 200 and res.json()["status"] == "accepted"
    assert owner.api.get("/api/v1/collaborators/").json()["count"] == 1
    assert (
        outsider.api.post(
            "/api/v1/collaborators/accept/", {"token": token}, format="json"
        ).status_code
        == 400
    )


def test_simulator_names_the_deciding_statement(owner, sub_account, outsider):
    res = owner.api.post(
        "/api/v1/authz/simulate/",
        {
            "member": sub_account.membership.pk,
            "action": "ems:CreateService",
            "resource": f"ems:*:{owner.tenant.app_id}:service/x",
        },
        format="json",
    )
    body = res.json()
    assert body["allowed"] is True and body["policy"] == "EMSFullAccess"
    assert body["statement"]["action"] == ["ems:*"]
    res = owner.api.post(
        "/api/v1/authz/simulate/",
        {"member": outsider.membership.pk, "action": "ems:CreateService", "resource": "*"},
        format="json",
    )
    assert res.status_code == 400 and "member" in res.json()


def test_audit_log_filters(owner):
    owner.api.post("/api/v1/sub-accounts/", {"name": "bob", "password": PASSWORD}, format="json")
    rows = owner.api.get("/api/v1/audit/?action=CreateSubAccount").json()["results"]
    assert [r["action"] for r in rows] == ["accounts:CreateSubAccount"]
    assert rows[0]["outcome"] == "success" and rows[0]["actor"] == owner.membership.pk
    assert owner.api.get("/api/v1/audit/?outcome=denied").json()["count"] == 0


def test_storage_credentials_encrypted_never_shown(owner):
    from accounts.models import TenantStorageCredential
    from accounts.service_role import platform_may_use_bucket, storage_credentials

    assert storage_credentials(owner.tenant) is None
    owner.api.put(
        "/api/v1/service-role/storage-credentials/",
        {"access_key_id": "AKID", "secret_access_key": "s3cr3t"},
        format="json",
    )
    row = TenantStorageCredential.objects.get()
    assert b"s3cr3t" not in bytes(row.secret_encrypted)
    assert "s3cr3t" not in owner.api.get("/api/v1/service-role/").content.decode()
    assert storage_credentials(owner.tenant).secret_access_key == "s3cr3t"
    assert platform_may_use_bucket(owner.tenant, f"models-{owner.tenant.app_id}")
    assert not platform_may_use_bucket(owner.tenant, "models-1234567890")
