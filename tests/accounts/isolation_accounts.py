"""What the isolation walk needs for the accounts URLs (see ``tests/isolation.py``)."""

from __future__ import annotations

from accounts import services
from accounts.models import Membership
from accounts.testing import PASSWORD, make_sub_account


def _setup(ctx):
    victim, outsider = ctx.victim.membership, ctx.outsider.membership
    sub = make_sub_account(victim.tenant, name="victimsub", policies=())
    pol = services.policy_create(
        actor=victim,
        name="victim-policy",
        document={"statement": [{"effect": "allow", "action": "ems:Describe*", "resource": "*"}]},
    )
    att = services.policy_attach(actor=victim, member=sub, policy_row=pol)
    key, _ = services.api_key_create(actor=victim, name="victim-key")
    from django.contrib.auth import get_user_model

    guest = get_user_model().objects.create_user("victimguest", "guest@example.com", PASSWORD)
    services.collaborator_invite(actor=victim, email="guest@example.com")
    collab = Membership.objects.get(tenant=victim.tenant, user=guest)
    collab.status = Membership.ACCEPTED
    collab.save()
    credential = services.storage_credential_put(
        actor=victim, access_key_id="victim-key-id", secret_access_key="x"
    )
    ctx.v.update(
        credential=credential,
        sub=sub,
        policy=pol,
        attachment=att,
        api_key=key,
        collaborator=collab,
        audit=victim.tenant.audit_events.first(),
        tenant=victim.tenant,
        member=victim,
    )
    ctx.markers |= {"victimsub", "victim-policy", "victim-key", "victimguest", victim.tenant.app_id}
    own_sub = make_sub_account(outsider.tenant, name="outsub", policies=())
    own_pol = services.policy_create(
        actor=outsider,
        name="outsider-policy",
        document={"statement": [{"effect": "allow", "action": "ems:Describe*", "resource": "*"}]},
    )
    ctx.o.update(sub=own_sub, policy=own_pol)


def register(reg) -> None:
    reg.setup(_setup)
    # objects by model label (both admin sites) and by API basename
    for key, name in [
        ("accounts.tenant", "tenant"),
        ("accounts.membership", "sub"),
        ("accounts.policy", "policy"),
        ("accounts.policyattachment", "attachment"),
        ("accounts.apikey", "api_key"),
        ("accounts.auditevent", "audit"),
        ("sub-account", "sub"),
        ("collaborator", "collaborator"),
        ("policy", "policy"),
        ("api-key", "api_key"),
        ("audit", "audit"),
    ]:
        reg.objects(key, lambda ctx, name=name: ctx.v[name])
    reg.objects("auth.user", lambda ctx: ctx.v["member"].user)
    reg.objects(
        "accounts.serviceroleauthorization", lambda ctx: ctx.v["tenant"].service_roles.first()
    )
    reg.objects("accounts.tenantstoragecredential", lambda ctx: ctx.v["credential"])
    reg.own("sub-account", lambda ctx: ctx.o["sub"])
    reg.own("collaborator", lambda ctx: ctx.o["sub"])

    # The outsider's own member, with the victim's policy id in the body: refused (400).
    reg.case(
        "sub-account-policies",
        "POST",
        own_url=True,
        body=lambda ctx: {"policy": ctx.v["policy"].pk},
        expect={400},
    )
    reg.case(
        "collaborator-policies",
        "POST",
        own_url=True,
        body=lambda ctx: {"policy": ctx.v["policy"].pk},
        expect={400, 404},
    )
    # detach: the victim's member and policy in the URL
    for base in ("sub-account", "collaborator"):
        reg.case(
            f"{base}-detach",
            "DELETE",
            kwargs=lambda ctx, base=base: {
                "pk": ctx.v["sub" if base == "sub-account" else "collaborator"].pk,
                "policy_id": ctx.v["policy"].pk,
            },
            expect={404},
        )
    reg.case(
        "authz-simulate-list",
        "POST",
        body=lambda ctx: {
            "member": ctx.v["sub"].pk,
            "action": "ems:DescribeService",
            "resource": "*",
        },
        expect={400},
    )
    reg.case(
        "signup-list",
        "POST",
        body=lambda ctx: {
            "username": "walker",
            "email": "walker@example.com",
            "password": PASSWORD,
        },
    )
    reg.case("api-key-list", "POST", body=lambda ctx: {"name": "walk"})
    reg.case(
        "sub-account-list", "POST", body=lambda ctx: {"name": "walker-sub", "password": PASSWORD}
    )
    reg.case("collaborator-list", "POST", body=lambda ctx: {"email": "guest@example.com"})
    reg.case("collaborator-accept", "POST", body=lambda ctx: {"token": "not-yours"}, expect={400})
    reg.case(
        "policy-list",
        "POST",
        body=lambda ctx: {
            "name": "walker-policy",
            "document": {"statement": [{"effect": "allow", "action": "ems:*", "resource": "*"}]},
        },
    )
    reg.case("service-role-authorize", "POST", body=lambda ctx: {})
    reg.case("service-role-revoke", "POST", body=lambda ctx: {})
    reg.case(
        "service-role-storage-credentials",
        ("PUT", "DELETE"),
        body=lambda ctx: {"access_key_id": "walk", "secret_access_key": "walk"},
    )

    # web pages
    plain = [
        "accounts:signup",
        "accounts:login",
        "accounts:logout",
        "accounts:password-reset",
        "accounts:password-reset-done",
        "accounts:password-reset-complete",
        "accounts:dashboard",
        "accounts:restricted",
        "accounts:service-role",
        "accounts:api-keys",
        "accounts:sub-accounts",
        "accounts:collaborators",
        "accounts:policies",
        "accounts:simulator",
        "accounts:audit",
        "home",
        "swagger-ui",
        "schema",
        "api-root",
    ]
    for name in plain:
        reg.case(name, ("GET", "POST", "PUT"), body=lambda ctx: {})
    reg.case("healthz", ("GET", "POST"), query="worker=0")
    reg.case(
        "accounts:switch-tenant",
        "POST",
        body=lambda ctx: {"membership": ctx.v["member"].pk},
        expect={404},
    )
    reg.case(
        "accounts:sub-account",
        ("GET", "POST"),
        kwargs=lambda ctx: {"pk": ctx.v["sub"].pk},
        body=lambda ctx: {"op": "delete"},
        expect={404},
    )
    reg.case(
        "accounts:policy",
        ("GET", "POST"),
        kwargs=lambda ctx: {"pk": ctx.v["policy"].pk},
        body=lambda ctx: {"op": "delete"},
        expect={404},
    )
    reg.case(
        "accounts:invitation-accept", ("GET", "POST"), kwargs=lambda ctx: {"token": "victim-token"}
    )
    reg.case(
        "accounts:password-reset-confirm",
        ("GET", "POST", "PUT"),
        kwargs=lambda ctx: {"uidb64": _uid(ctx.v["member"].user), "token": "set-password"},
    )
    reg.case(
        "accounts:simulator",
        "POST",
        body=lambda ctx: {
            "member": ctx.v["sub"].pk,
            "action": "ems:DescribeService",
            "resource": "*",
        },
    )
    reg.case(
        "accounts:sub-accounts",
        "POST",
        body=lambda ctx: {"name": "walker-sub2", "password": PASSWORD},
    )
    reg.case(
        "accounts:policies", "POST", body=lambda ctx: {"name": "walker-policy2", "document": "{}"}
    )
    reg.case(
        "accounts:api-keys", "POST", body=lambda ctx: {"revoke": ctx.v["api_key"].pk}, expect={404}
    )


def _uid(user) -> str:
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    return urlsafe_base64_encode(force_bytes(user.pk))
