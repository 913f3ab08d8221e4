"""Custom policies and their attachment to members."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts import audit, authz, policy
from accounts.actor import member_or_none
from accounts.models import Membership, Policy, PolicyAttachment
from accounts.services._common import guard, invalid

NAME_RE = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,128}$")


def _document(document) -> dict:
    try:
        return policy.validate(document)
    except policy.PolicyError as exc:
        raise ValidationError({"document": [str(exc)]}) from None


def _name(actor, name: str, exclude_pk=None) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise invalid("name", "Use 1-128 letters, digits and + = , . @ _ -.")
    clash = Policy.objects.filter(name=name, tenant__isnull=True) | Policy.objects.filter(
        name=name, tenant=actor.tenant
    )
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise invalid("name", f"A policy named {name!r} already exists (custom or preset).")
    return name


def policy_create(*, actor: Membership, name: str, document, description: str = "") -> Policy:
    guard(actor, "accounts:CreatePolicy", authz.resource_name(actor.tenant, "policy", name))
    name = _name(actor, name)
    normalized = _document(document)
    try:
        with transaction.atomic():
            row = Policy.objects.create(
                tenant=actor.tenant,
                name=name,
                document=normalized,
                description=(description or "")[:300],
            )
            audit.record(actor=actor, action="accounts:CreatePolicy", resource=row.resource_name)
    except IntegrityError:
        raise invalid("name", f"A policy named {name!r} already exists.") from None
    return row


def policy_update(
    *,
    actor: Membership,
    policy_row: Policy,
    name: str | None = None,
    document=None,
    description: str | None = None,
) -> Policy:
    guard(actor, "accounts:UpdatePolicy", policy_row)
    if policy_row.is_preset:
        raise invalid("name", "Preset policies cannot be changed; copy one into a custom policy.")
    fields = []
    if name is not None and name != policy_row.name:
        policy_row.name = _name(actor, name, exclude_pk=policy_row.pk)
        fields.append("name")
    if document is not None:
        policy_row.document = _document(document)
        fields.append("document")
    if description is not None:
        policy_row.description = description[:300]
        fields.append("description")
    with transaction.atomic():
        if fields:
            policy_row.save(update_fields=[*fields, "updated_at"])
        audit.record(
            actor=actor,
            action="accounts:UpdatePolicy",
            resource=policy_row.resource_name,
            detail={"changed": fields},
        )
    return policy_row


def policy_delete(*, actor: Membership, policy_row: Policy) -> None:
    guard(actor, "accounts:DeletePolicy", policy_row)
    if policy_row.is_preset:
        raise invalid("name", "Preset policies cannot be deleted.")
    if policy_row.attachments.exists():
        raise invalid("name", "Detach this policy from every member before deleting it.")
    with transaction.atomic():
        resource = policy_row.resource_name
        policy_row.delete()
        audit.record(actor=actor, action="accounts:DeletePolicy", resource=resource)


def _same_tenant(actor, member: Membership, policy_row: Policy) -> None:
    # Callers look both up through for_actor (404 otherwise); this is the last line.
    if member.tenant_id != actor.tenant_id:
        raise invalid("member", "No such member in this account.")
    if policy_row.tenant_id not in (None, actor.tenant_id):
        raise invalid("policy", "No such policy in this account.")


def policy_attach(*, actor: Membership, member: Membership, policy_row: Policy) -> PolicyAttachment:
    guard(actor, "accounts:AttachPolicy", member)
    _same_tenant(actor, member, policy_row)
    if member.kind == Membership.MAIN:
        raise invalid("member", "The main account may already do everything; attach to members.")
    if PolicyAttachment.objects.filter(membership=member, policy=policy_row).exists():
        raise invalid("policy", f"{policy_row.name} is already attached to {member.name}.")
    try:
        with transaction.atomic():
            row = PolicyAttachment.objects.create(
                tenant=actor.tenant,
                membership=member,
                policy=policy_row,
                attached_by=member_or_none(actor),
            )
            audit.record(
                actor=actor,
                action="accounts:AttachPolicy",
                resource=member.resource_name,
                detail={"policy": policy_row.name},
            )
    except IntegrityError:
        raise invalid("policy", f"{policy_row.name} is already attached.") from None
    authz.invalidate(member)
    return row


def policy_detach(*, actor: Membership, member: Membership, policy_row: Policy) -> None:
    guard(actor, "accounts:DetachPolicy", member)
    _same_tenant(actor, member, policy_row)
    with transaction.atomic():
        deleted, _ = PolicyAttachment.objects.filter(membership=member, policy=policy_row).delete()
        if not deleted:
            raise invalid("policy", f"{policy_row.name} is not attached to {member.name}.")
        audit.record(
            actor=actor,
            action="accounts:DetachPolicy",
            resource=member.resource_name,
            detail={"policy": policy_row.name},
        )
    authz.invalidate(member)
