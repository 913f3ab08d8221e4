"""The service-role authorization and the tenant's own storage credentials."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import audit, authz, service_role
from accounts.models import SERVICE_ROLE_NAME, ServiceRoleAuthorization, TenantStorageCredential
from accounts.services._common import guard, invalid


def _role_resource(tenant) -> str:
    return authz.resource_name(tenant, "role", SERVICE_ROLE_NAME)


def service_role_authorize(*, actor) -> ServiceRoleAuthorization:
    """One click: records the tenant's consent (who, when). Idempotent."""
    guard(actor, "accounts:AuthorizeServiceRole", _role_resource(actor.tenant))
    current = service_role.current_authorization(actor.tenant)
    if current is not None:
        return current
    try:
        with transaction.atomic():
            row = ServiceRoleAuthorization.objects.create(tenant=actor.tenant, authorized_by=actor)
            audit.record(
                actor=actor,
                action="accounts:AuthorizeServiceRole",
                resource=_role_resource(actor.tenant),
            )
    except IntegrityError:  # a concurrent click won
        return service_role.current_authorization(actor.tenant)
    authz.invalidate(actor)
    return row


def service_role_revoke(*, actor) -> None:
    """Revoking blocks every action that needs the role (new deploys among them)."""
    guard(actor, "accounts:RevokeServiceRole", _role_resource(actor.tenant))
    with transaction.atomic():
        count = ServiceRoleAuthorization.objects.filter(
            tenant=actor.tenant, revoked_at__isnull=True
        ).update(revoked_at=timezone.now(), revoked_by=actor)
        if not count:
            raise invalid("role", "The service role is not authorized.")
        audit.record(
            actor=actor, action="accounts:RevokeServiceRole", resource=_role_resource(actor.tenant)
        )
    authz.invalidate(actor)


def storage_credential_put(
    *, actor, access_key_id: str, secret_access_key: str, endpoint_url: str = ""
) -> TenantStorageCredential:
    resource = authz.resource_name(actor.tenant, "storage-credential", "default")
    guard(actor, "accounts:PutStorageCredential", resource)
    if not access_key_id or not secret_access_key:
        raise invalid("secret_access_key", "Both the key id and the secret are required.")
    with transaction.atomic():
        row, _ = TenantStorageCredential.objects.update_or_create(
            tenant=actor.tenant,
            defaults={
                "access_key_id": access_key_id.strip(),
                "secret_encrypted": service_role.encrypt(secret_access_key),
                "endpoint_url": endpoint_url or "",
                "updated_by": actor,
            },
        )
        audit.record(actor=actor, action="accounts:PutStorageCredential", resource=resource)
    return row


def storage_credential_delete(*, actor) -> None:
    resource = authz.resource_name(actor.tenant, "storage-credential", "default")
    guard(actor, "accounts:DeleteStorageCredential", resource)
    with transaction.atomic():
        TenantStorageCredential.objects.filter(tenant=actor.tenant).delete()
        audit.record(actor=actor, action="accounts:DeleteStorageCredential", resource=resource)
