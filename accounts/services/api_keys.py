"""API keys: ``ems_<prefix>_<secret>``, shown once, kept as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import audit, authz
from accounts.models import ApiKey
from accounts.services._common import guard, invalid

LAST_USED_PRECISION = timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, actor, name: str) -> tuple[ApiKey, str]:
    name = (name or "").strip()
    guard(actor, "ems:CreateApiKey", authz.resource_name(actor.tenant, "api-key", "*"))
    if not name or len(name) > 64:
        raise invalid("name", "Give the key a name of 1-64 characters.")
    if ApiKey.objects.filter(membership=actor, name=name, revoked_at__isnull=True).exists():
        raise invalid("name", f"You already have a key named {name!r}.")
    prefix = secrets.token_hex(6)
    raw = f"ems_{prefix}_{secrets.token_urlsafe(32)}"
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(
                tenant=actor.tenant, membership=actor, name=name, prefix=prefix, key_hash=_hash(raw)
            )
            audit.record(actor=actor, action="ems:CreateApiKey", resource=key.resource_name)
    except IntegrityError:
        raise invalid("name", f"You already have a key named {name!r}.") from None
    return key, raw


def api_key_revoke(*, actor, api_key: ApiKey) -> None:
    guard(actor, "ems:DeleteApiKey", api_key)
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit.record(actor=actor, action="ems:DeleteApiKey", resource=api_key.resource_name)


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The live key for ``raw`` or None; records last use (at most once a minute per key)."""
    parts = (raw or "").split("_", 2)
    if len(parts) != 3 or parts[0] != "ems":
        return None
    key = (
        ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True)
        .select_related("membership__user", "membership__tenant", "tenant")
        .first()
    )
    if key is None or not hmac.compare_digest(key.key_hash, _hash(raw)):
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
