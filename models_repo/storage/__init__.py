"""Object storage bound to one tenant.

``get_storage(tenant)`` asks the service-role guard first (a tenant that has not authorized the
platform's service role gets nothing), picks the backend from the settings
(``EMS_STORAGE_BACKEND``: ``local`` or ``s3``) with the tenant's own credentials or the
platform's, and returns a ``TenantStorage`` that only touches buckets named ``<name>-<app_id>``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from models_repo.addresses import AddressError, bucket_app_id, check_bucket_name
from models_repo.storage.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AccessRefused,
    Backend,
    BucketInfo,
    BucketNotFound,
    NotFound,
    ObjectInfo,
    Page,
    StorageError,
    TransientStorageError,
    check_key,
    check_prefix,
)

__all__ = [
    "AccessRefused",
    "BucketInfo",
    "BucketNotFound",
    "NotFound",
    "ObjectInfo",
    "Page",
    "StorageError",
    "TenantStorage",
    "TransientStorageError",
    "get_storage",
]


class TenantStorage:
    """The storage operations one tenant may perform: only its own buckets, checked keys."""

    def __init__(self, backend: Backend, *, app_id: str):
        self.backend = backend
        self.app_id = str(app_id)

    def owns(self, bucket: str) -> bool:
        return bucket.endswith(f"-{self.app_id}") and len(bucket) > len(self.app_id) + 1

    def _bucket(self, bucket: str) -> str:
        try:
            check_bucket_name(bucket)
        except AddressError as exc:
            raise AccessRefused(exc.message) from None
        if not self.owns(bucket):
            raise AccessRefused(f"The bucket {bucket} does not belong to app id {self.app_id}.")
        return bucket

    def full_bucket_name(self, name: str) -> str:
        """``models`` → ``models-<app_id>``; a name already ending in the app id is kept; a
        name ending in another app id is refused (it would look like another tenant's)."""
        if self.owns(name):
            return name
        if bucket_app_id(name) is not None:
            raise AccessRefused(
                f"Give the bucket name without an app id: -{self.app_id} is added to it."
            )
        return f"{name}-{self.app_id}"

    # --- buckets ----------------------------------------------------------------------------
    def create_bucket(self, name: str, *, region: str) -> BucketInfo:
        return self.backend.create_bucket(self._bucket(name), region=region)

    def list_buckets(self) -> list[BucketInfo]:
        found = [info for info in self.backend.list_buckets() if self.owns(info.name)]
        # S3's bucket listing carries no region; ask for each of the tenant's buckets.
        return [info if info.region else self.backend.bucket_info(info.name) for info in found]

    def bucket_info(self, bucket: str) -> BucketInfo:
        return self.backend.bucket_info(self._bucket(bucket))

    # --- objects ----------------------------------------------------------------------------
    def list_folder(
        self,
        bucket: str,
        prefix: str = "",
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        token: str | None = None,
    ) -> Page:
        page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        return self.backend.list_folder(
            self._bucket(bucket), check_prefix(prefix), page_size=page_size, token=token or None
        )

    def walk(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        return self.backend.walk(self._bucket(bucket), check_prefix(prefix))

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        return self.backend.stat(self._bucket(bucket), check_key(key))

    def is_file(self, bucket: str, key: str) -> bool:
        try:
            self.stat(bucket, key.rstrip("/"))
        except NotFound:
            return False
        return True

    def open(self, bucket: str, key: str) -> BinaryIO:
        return self.backend.open(self._bucket(bucket), check_key(key))

    def open_range(self, bucket: str, key: str, start: int, end: int) -> BinaryIO:
        """The bytes ``[start, end)`` of an object: a seek on the local store, a ranged GET on
        S3, so reading a slice does not read what comes before it."""
        return self.backend.open_range(self._bucket(bucket), check_key(key), start, end)

    def read(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        stream = self.open(bucket, key)
        try:
            data = stream.read() if max_bytes is None else stream.read(max_bytes + 1)
        finally:
            stream.close()
        if max_bytes is not None and len(data) > max_bytes:
            raise StorageError(f"{key} is larger than {max_bytes} bytes.")
        return data

    def write(self, bucket: str, key: str, stream: BinaryIO) -> ObjectInfo:
        return self.backend.write(self._bucket(bucket), check_key(key), stream)

    def delete(self, bucket: str, key: str) -> None:
        self.backend.delete(self._bucket(bucket), check_key(key))

    def copy_folder(self, bucket: str, prefix: str, dest: Path | str) -> list[ObjectInfo]:
        """Copy every file under ``prefix`` into ``dest`` (created; must not exist), keeping the
        tree. Written to a sibling folder first and renamed, so a cache never holds half a
        model. Returns the files with keys relative to ``prefix``."""
        dest = Path(dest)
        if dest.exists():
            raise StorageError(f"{dest} already exists.")
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
        partial.mkdir(parents=True)
        copied = []
        try:
            base = partial.resolve()
            for info in self.walk(bucket, prefix):
                relative = info.key[len(prefix) :]
                target = (base / relative).resolve()
                if not target.is_relative_to(base) or target == base:
                    raise AccessRefused(f"{info.key} would land outside the cache folder.")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.backend.download(bucket, info.key, target)
                copied.append(
                    ObjectInfo(key=relative, size=info.size, etag=info.etag, modified=info.modified)
                )
            partial.rename(dest)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return copied


def _credentials(value: Any):
    """Accepts what the accounts app hands over: None (platform credentials), a mapping or an
    object with ``access_key_id`` / ``secret_access_key`` (/ ``session_token``)."""
    from models_repo.storage.s3 import Credentials

    if value is None or isinstance(value, Credentials):
        return value
    get = value.get if isinstance(value, dict) else lambda name: getattr(value, name, None)
    return Credentials(
        access_key_id=get("access_key_id"),
        secret_access_key=get("secret_access_key"),
        session_token=get("session_token"),
    )


def _default_guard(tenant) -> None:
    from accounts.service_role import require_authorized

    require_authorized(tenant)


def _default_credentials(tenant):
    from accounts.service_role import storage_credentials

    return storage_credentials(tenant)


def make_backend(*, credentials: Any = None, region: str | None = None) -> Backend:
    from django.conf import settings

    if settings.EMS_STORAGE_BACKEND == "s3":
        from models_repo.storage.s3 import S3Backend

        return S3Backend(
            endpoint_url=settings.EMS_S3_ENDPOINT_URL,
            addressing_style=settings.EMS_S3_ADDRESSING_STYLE,
            credentials=_credentials(credentials),
            region_name=region,
        )
    from models_repo.storage.local import LocalBackend

    return LocalBackend(settings.EMS_STORAGE_ROOT)


def get_storage(
    tenant,
    *,
    guard: Callable[[Any], None] | None = None,
    credentials: Callable[[Any], Any] | None = None,
    backend: Backend | None = None,
) -> TenantStorage:
    """The tenant's storage. ``guard(tenant)`` raises when the service role is not authorized
    (by default ``accounts.service_role.require_authorized``); nothing is touched before it."""
    (guard or _default_guard)(tenant)
    if backend is None:
        backend = make_backend(credentials=(credentials or _default_credentials)(tenant))
    return TenantStorage(backend, app_id=str(tenant.app_id))
