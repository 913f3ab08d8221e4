"""Calling a service: its addresses and its auth tokens (issue, rotate, revoke, reveal, auth
on/off). Same rules as ``serving.services``: keyword-only, the actor's policy checked, one
transaction with its audit row; the route is re-published on commit (``serving.publish``).

A token is shown in clear only by :func:`service_token_reveal` (``ems:DescribeServiceToken``,
every call audited) — decrypted from the copy encrypted with ``EMS_SECRETS_KEY``.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import authz
from accounts.audit import record
from serving import events
from serving.models import Service, ServiceToken
from gateway.tokens import decrypt, encrypt, generate_token, token_sha256

log = logging.getLogger(__name__)

__all__ = [
    "addresses",
    "curl_line",
    "current_token",
    "service_set_auth",
    "service_token_reveal",
    "service_token_revoke",
    "service_token_rotate",
    "token_issue",
]

CURL = (
    'curl -H "Content-Type: application/json" -H "x-Auth-Token: {token}" '
    "-X POST {address}/v1/models/m:predict -d @flower.json"
)
CURL_NO_AUTH = (
    'curl -H "Content-Type: application/json" -X POST {address}/v1/models/m:predict -d @flower.json'
)


def addresses(service: Service) -> dict[str, str]:
    """``address`` (path style, ``EMS_GATEWAY_URL/<id>``), ``host_address``
    (``<id>.<EMS_GATEWAY_DOMAIN>``, same scheme and port) and the full ``predict_url``."""
    base = settings.EMS_GATEWAY_URL.rstrip("/")
    parts = urlsplit(base)
    port = f":{parts.port}" if parts.port else ""
    host = f"{parts.scheme}://{service.service_id}.{settings.EMS_GATEWAY_DOMAIN}{port}"
    address = f"{base}/{service.service_id}"
    return {
        "address": address,
        "host_address": host,
        "predict_url": f"{address}/v1/models/m:predict",
    }


def curl_line(service: Service, token: str | None = None) -> str:
    address = addresses(service)["address"]
    if not service.auth_enabled:
        return CURL_NO_AUTH.format(address=address)
    return CURL.format(token=token or "TOKEN", address=address)


def _publish_on_commit(service: Service) -> None:
    service_pk = service.pk

    def publish():
        from serving import publish as publisher

        try:
            publisher.publish_service(Service.objects.get(pk=service_pk))
        except Exception:  # transient (Redis): the next reconcile pass publishes again
            log.exception("publishing the route of service %s failed", service_pk)

    transaction.on_commit(publish)


def token_issue(*, service: Service, actor=None) -> tuple[ServiceToken, str]:
    """A new live token for the service (no policy check: deploy and the token services call
    it inside their own checked transaction). Returns the row and the token in clear."""
    token = generate_token()
    row = ServiceToken.objects.create(
        tenant_id=service.tenant_id,
        service=service,
        sha256=token_sha256(token),
        secret=encrypt(token, settings.EMS_SECRETS_KEY),
        created_by=actor,
    )
    return row, token


def current_token(service: Service) -> ServiceToken | None:
    """The newest live token without an expiry (the one to hand out)."""
    return (
        service.tokens.filter(revoked_at__isnull=True, not_after__isnull=True)
        .order_by("-created_at", "-pk")
        .first()
    )


def _live(service: Service):
    now = timezone.now()
    return [t for t in service.tokens.filter(revoked_at__isnull=True) if t.is_live(now)]


def service_token_rotate(*, actor, service: Service, grace_seconds: int | None = None) -> str:
    """A new token; every older live token keeps working until now + grace (default
    ``EMS_TOKEN_GRACE_SECONDS``) or its own earlier expiry. Returns the new token."""
    authz.check(actor, "ems:RotateServiceToken", service)
    if not service.auth_enabled:
        raise ValidationError("The service has no auth token: switch auth on first.")
    grace = settings.EMS_TOKEN_GRACE_SECONDS if grace_seconds is None else int(grace_seconds)
    if not 0 <= grace <= 30 * 86400:
        raise ValidationError({"grace_seconds": "The grace period is 0 to 30 days."})
    now = timezone.now()
    limit = now + dt.timedelta(seconds=grace)
    with transaction.atomic():
        for token in _live(service):
            if grace == 0:
                token.revoked_at = now
            elif token.not_after is None or token.not_after > limit:
                token.not_after = limit
            token.save(update_fields=["not_after", "revoked_at"])
        _, clear = token_issue(service=service, actor=actor)
        events.emit(service, events.TOKEN, f"token rotated (old one valid for {grace} s)")
        record(
            actor=actor,
            action="ems:RotateServiceToken",
            resource=service.resource_name,
            detail={"grace_seconds": grace},
        )
        _publish_on_commit(service)
    return clear


def service_token_revoke(*, actor, service: Service) -> str:
    """Every live token stops working at once (as soon as the gateways apply the route); a
    fresh one is issued so the service stays callable by whoever may see it. Returns it."""
    authz.check(actor, "ems:RevokeServiceToken", service)
    if not service.auth_enabled:
        raise ValidationError("The service has no auth token.")
    with transaction.atomic():
        revoked = service.tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        _, clear = token_issue(service=service, actor=actor)
        events.emit(service, events.TOKEN, f"{revoked} token(s) revoked, a new one issued")
        record(
            actor=actor,
            action="ems:RevokeServiceToken",
            resource=service.resource_name,
            detail={"revoked": revoked},
        )
        _publish_on_commit(service)
    return clear


def service_token_reveal(*, actor, service: Service) -> str | None:
    """The current token in clear (None when auth is off); every call is audited."""
    authz.check(actor, "ems:DescribeServiceToken", service)
    if not service.auth_enabled:
        return None
    with transaction.atomic():
        token = current_token(service)
        if token is None:  # auth on, nothing live (all expired): issue one
            token, clear = token_issue(service=service, actor=actor)
            _publish_on_commit(service)
        else:
            clear = decrypt(token.secret, settings.EMS_SECRETS_KEY)
        record(
            actor=actor,
            action="ems:DescribeServiceToken",
            resource=service.resource_name,
            detail={"token": token.sha256[:8]},
        )
    return clear


def service_set_auth(*, actor, service: Service, enabled: bool) -> Service:
    """Switch the token check on (issuing a token when none is live) or off."""
    authz.check(actor, "ems:UpdateService", service)
    with transaction.atomic():
        Service.objects.filter(pk=service.pk).update(
            auth_enabled=bool(enabled), updated_at=timezone.now()
        )
        service.auth_enabled = bool(enabled)
        if enabled and current_token(service) is None:
            token_issue(service=service, actor=actor)
        events.emit(service, events.TOKEN, f"auth token {'on' if enabled else 'off'}")
        record(
            actor=actor,
            action="ems:UpdateService",
            resource=service.resource_name,
            detail={"auth_enabled": bool(enabled)},
        )
        _publish_on_commit(service)
    return service
