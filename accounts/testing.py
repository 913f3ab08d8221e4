"""Builders for tests of every app: tenants with a main account, sub-accounts, presets.

``tests/fixtures_accounts.py`` turns them into the ``owner`` / ``sub_account`` / ``outsider``
fixtures; use these directly for anything more particular.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model

from accounts.models import Membership, Policy, PolicyAttachment, ServiceRoleAuthorization, Tenant

PASSWORD = "Correct-Horse-42!"  # noqa: S105 - test password
_counter = itertools.count(1)


@dataclass
class World:
    """One member as seen by a test: ``api`` (DRF APIClient) and ``client`` (Django test
    client) are logged in as ``user`` with ``membership`` active."""

    user: object
    membership: Membership
    tenant: Tenant
    password: str = PASSWORD
    api: object = None
    client: object = None
    extra: dict = field(default_factory=dict)


def ensure_presets() -> None:
    from accounts.bootstrap import ensure_presets as run

    if Policy.objects.filter(tenant__isnull=True).count() < 7:
        run()


def authorize(tenant, by: Membership | None = None) -> ServiceRoleAuthorization:
    row = ServiceRoleAuthorization.objects.filter(tenant=tenant, revoked_at__isnull=True).first()
    return row or ServiceRoleAuthorization.objects.create(tenant=tenant, authorized_by=by)


def make_tenant(*, name: str | None = None, authorized: bool = True) -> Membership:
    n = next(_counter)
    User = get_user_model()
    username = f"{name or 'owner'}{n}"
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    while True:
        app_id = str(1_000_000_000 + n * 7919 + next(_counter))
        if not Tenant.objects.filter(app_id=app_id).exists():
            break
    tenant = Tenant.objects.create(app_id=app_id, name=f"Tenant {username}")
    member = Membership.objects.create(
        tenant=tenant, user=user, kind=Membership.MAIN, name=username
    )
    if authorized:
        authorize(tenant, member)
    return member


def make_sub_account(tenant, *, name: str | None = None, policies=("EMSFullAccess",)) -> Membership:
    ensure_presets()
    name = name or f"dev{next(_counter)}"
    User = get_user_model()
    user = User.objects.create_user(f"{tenant.app_id}:{name}", "", PASSWORD)
    member = Membership.objects.create(tenant=tenant, user=user, kind=Membership.SUB, name=name)
    for policy_name in policies:
        attach(member, policy_name)
    return member


def attach(member: Membership, policy_name: str) -> PolicyAttachment:
    policy = (
        Policy.objects.get(name=policy_name, tenant__in=[member.tenant_id])
        if Policy.objects.filter(name=policy_name, tenant=member.tenant).exists()
        else Policy.objects.get(name=policy_name, tenant__isnull=True)
    )
    return PolicyAttachment.objects.create(tenant=member.tenant, policy=policy, membership=member)


def world(member: Membership) -> World:
    from django.test import Client
    from rest_framework.test import APIClient

    api, client = APIClient(), Client()
    api.force_login(member.user)
    client.force_login(member.user)
    from accounts.actor import SESSION_KEY

    for c in (api, client):
        session = c.session
        session[SESSION_KEY] = member.pk
        session.save()
    return World(user=member.user, membership=member, tenant=member.tenant, api=api, client=client)
