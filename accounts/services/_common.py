"""Helpers shared by the services: the guarded permission check (denials are audited)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts import audit, authz
from accounts.models import AuditEvent


def guard(actor, action: str, resource) -> None:
    """``authz.check`` that writes a ``denied`` audit row before refusing."""
    if actor is None:
        raise PermissionDenied("no active membership")
    try:
        authz.check(actor, action, resource)
    except PermissionDenied:
        name = resource if isinstance(resource, str) else getattr(resource, "resource_name", "")
        with transaction.atomic():
            audit.record(actor=actor, action=action, resource=name, outcome=AuditEvent.DENIED)
        raise


def invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})
