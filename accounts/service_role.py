"""The service role: the tenant's consent that the platform may touch its object storage.

Storage code calls :func:`require_authorized` before touching a tenant's buckets, then
:func:`storage_credentials`: the tenant's own (decrypted) credentials, or ``None`` meaning the
platform's, which may be used only on the tenant's own buckets (``<name>-<app_id>``, see
:func:`platform_may_use_bucket`).

No model import: ``accounts.authz`` (imported while the models load) asks :func:`is_authorized`;
rows are read through the tenant's relations.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from accounts.errors import ServiceRoleNotAuthorized


@dataclass(frozen=True)
class StorageCredentials:
    access_key_id: str
    secret_access_key: str
    endpoint_url: str = ""

    def __repr__(self) -> str:  # never print the secret
        return f"StorageCredentials(access_key_id={self.access_key_id!r}, secret=***)"


def _fernet() -> Fernet:
    return Fernet(settings.EMS_SECRETS_KEY.encode())


def encrypt(secret: str) -> bytes:
    return _fernet().encrypt(secret.encode())


def decrypt(token: bytes) -> str:
    try:
        return _fernet().decrypt(bytes(token)).decode()
    except InvalidToken:
        raise ValueError("stored secret cannot be decrypted with EMS_SECRETS_KEY") from None


def current_authorization(tenant):
    return tenant.service_roles.filter(revoked_at__isnull=True).order_by("-authorized_at").first()


def is_authorized(tenant) -> bool:
    return tenant.service_roles.filter(revoked_at__isnull=True).exists()


def require_authorized(tenant) -> None:
    if not is_authorized(tenant):
        raise ServiceRoleNotAuthorized(tenant)


def platform_may_use_bucket(tenant, bucket: str) -> bool:
    return bucket.endswith(f"-{tenant.app_id}") and len(bucket) > len(tenant.app_id) + 1


def storage_credentials(tenant) -> StorageCredentials | None:
    """Raises ``ServiceRoleNotAuthorized`` first; then the tenant's own credentials or None."""
    require_authorized(tenant)
    credentials = tenant._meta.get_field("storage_credential").related_model  # fresh, not cached
    row = credentials.objects.filter(tenant=tenant).first()
    if row is None:
        return None
    return StorageCredentials(row.access_key_id, decrypt(row.secret_encrypted), row.endpoint_url)
