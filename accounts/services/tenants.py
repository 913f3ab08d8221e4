"""The operator's operations on whole tenants: create (with its main account), suspend,
reinstate, delete. The operator acts through ``PlatformActor``; every change is audited in the
tenant's log with the operator as the actor (a deleted tenant's log goes with it: the admin's
own history keeps that one)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from accounts import audit, authz, lifecycle
from accounts.actor import PlatformActor
from accounts.models import Membership, Tenant
from accounts.services._common import invalid
from accounts.services.members import signup

log = logging.getLogger(__name__)


def _operator(operator) -> None:
    if operator is None or not (operator.is_active and operator.is_staff):
        raise invalid("operator", "Only an active operator (staff user) may do this.")


def tenant_create(*, operator, name: str, username: str, email: str, password: str) -> Membership:
    """A new tenant with a unique app id and its main account (the sign-up service)."""
    _operator(operator)
    return signup(
        username=username, email=email, password=password, tenant_name=name, operator=operator
    )


def tenant_suspend(*, operator, tenant: Tenant, reason: str) -> Tenant:
    """Stop the tenant's services; its endpoints answer 403 with ``reason``; its logins and
    API keys are refused. Reversible with ``tenant_reinstate``."""
    _operator(operator)
    reason = (reason or "").strip()
    if not reason:
        raise invalid("reason", "Say why the account is suspended: its callers are told.")
    if len(reason) > 300:
        raise invalid("reason", "Keep the reason under 300 characters.")
    actor = PlatformActor(tenant, operator=operator)
    with transaction.atomic():
        if not Tenant.objects.filter(pk=tenant.pk, suspended_at__isnull=True).update(
            suspended_at=timezone.now(), suspension_reason=reason
        ):
            raise invalid("tenant", f"{tenant} is already suspended.")
        tenant.refresh_from_db()
        actor.tenant = tenant
        audit.record(
            actor=actor,
            action="accounts:SuspendTenant",
            resource=authz.resource_name(tenant, "tenant"),
            detail={"reason": reason},
        )
        lifecycle.call("on_suspend", tenant=tenant, actor=actor)
    return tenant


def tenant_reinstate(*, operator, tenant: Tenant) -> Tenant:
    """Lift a suspension: logins, keys and endpoints work again. Services stay stopped until
    the tenant resumes them (the operator may have suspended it for what they cost)."""
    _operator(operator)
    actor = PlatformActor(tenant, operator=operator)
    with transaction.atomic():
        if not Tenant.objects.filter(pk=tenant.pk, suspended_at__isnull=False).update(
            suspended_at=None, suspension_reason=""
        ):
            raise invalid("tenant", f"{tenant} is not suspended.")
        tenant.refresh_from_db()
        actor.tenant = tenant
        audit.record(
            actor=actor,
            action="accounts:ReinstateTenant",
            resource=authz.resource_name(tenant, "tenant"),
        )
        lifecycle.call("on_reinstate", tenant=tenant, actor=actor)
    return tenant


def tenant_delete(*, operator, tenant: Tenant) -> None:
    """Delete a tenant with nothing running; refused (with the reasons) otherwise."""
    _operator(operator)
    blockers = lifecycle.delete_blockers(tenant)
    if blockers:
        raise invalid("tenant", f"{tenant} cannot be deleted: " + "; ".join(blockers))
    label = str(tenant)
    try:
        with transaction.atomic():
            users = [m.user for m in tenant.memberships.exclude(kind=Membership.COLLABORATOR)]
            tenant.delete()
            for user in users:  # main and sub-accounts exist only in this tenant
                if not user.memberships.exists():
                    user.delete()
    except ProtectedError as exc:
        kinds = sorted({type(obj)._meta.verbose_name_plural for obj in exc.protected_objects})
        raise invalid(
            "tenant", f"{label} still owns {', '.join(kinds)}: delete those first."
        ) from None
    log.info("tenant %s deleted by operator %s", label, operator.get_username())
