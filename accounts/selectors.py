"""Read queries of the accounts app, always through the scoping choke point."""

from __future__ import annotations

from accounts.models import ApiKey, AuditEvent, Membership, Policy, PolicyAttachment


def sub_accounts(*, actor):
    return (
        Membership.objects.for_actor(actor, "accounts:ListSubAccounts")
        .filter(kind=Membership.SUB)
        .select_related("user", "tenant")
    )


def collaborators(*, actor):
    # Pending invitations are not listed: that would tell the inviter which addresses exist.
    return (
        Membership.objects.for_actor(actor, "accounts:ListCollaborators")
        .filter(kind=Membership.COLLABORATOR, status=Membership.ACCEPTED)
        .select_related("user", "tenant")
    )


def policies(*, actor):
    return Policy.objects.for_actor(actor, "accounts:ListPolicies").select_related("tenant")


def attachments(*, actor, member=None):
    qs = PolicyAttachment.objects.for_actor(actor, "accounts:ListAttachedPolicies").select_related(
        "policy", "membership", "tenant"
    )
    return qs if member is None else qs.filter(membership=member)


def api_keys(*, actor):
    return ApiKey.objects.for_actor(actor, "ems:ListApiKeys").filter(
        membership=actor, revoked_at__isnull=True
    )


def audit_events(*, actor, action=None, outcome=None, actor_id=None, since=None, until=None):
    qs = AuditEvent.objects.for_actor(actor, "accounts:ListAuditEvents").select_related("tenant")
    if action:
        qs = qs.filter(action__icontains=action)
    if outcome:
        qs = qs.filter(outcome=outcome)
    if actor_id:
        qs = qs.filter(actor_id=actor_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    return qs
