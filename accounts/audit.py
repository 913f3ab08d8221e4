"""The audit log: every state-changing service call records one row in its own transaction."""

from __future__ import annotations

from accounts.models import AuditEvent


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    if getattr(actor, "is_platform", False):
        return actor.label
    return f"{actor.user.get_username()} ({actor.kind})"


def record(
    *,
    actor,
    action: str,
    resource: str,
    outcome: str = AuditEvent.SUCCESS,
    detail: dict | None = None,
    tenant=None,
) -> AuditEvent:
    """Write one audit row. Call it inside the service's ``transaction.atomic()`` block so the
    row and the change commit (or roll back) together. ``tenant`` defaults to the actor's."""
    tenant = tenant if tenant is not None else actor.tenant
    return AuditEvent.objects.create(
        tenant=tenant,
        actor=actor if actor is not None and actor.pk else None,
        actor_label=actor_label(actor),
        action=action,
        resource=resource,
        outcome=outcome,
        detail=detail or {},
    )
