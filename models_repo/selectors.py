"""Read queries of the model repository, always scoped to the acting membership."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import BinaryIO

from django.core.exceptions import ValidationError
from django.db.models import Prefetch

from accounts import authz
from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
from models_repo.services import bucket_resource, tenant_storage
from models_repo.storage import AccessRefused, BucketInfo, NotFound, ObjectInfo, Page
from models_repo.storage.base import DEFAULT_PAGE_SIZE, check_key


def regions():
    return Region.objects.filter(is_active=True).order_by("name")


def runtimes(*, actor, action: str = "ems:DescribeRuntimes"):
    return RuntimeEnvironment.objects.for_actor(actor, action).order_by("tenant_id", "name")


def model_configs(*, actor, action: str = "ems:DescribeModelConfigs"):
    versions = ModelConfigVersion.objects.select_related("runtime").order_by("number")
    return (
        ModelConfig.objects.for_actor(actor, action)
        .select_related("region", "tenant")
        .prefetch_related(Prefetch("versions", queryset=versions))
        .order_by("name")
    )


def versions(*, actor, config: ModelConfig):
    return (
        ModelConfigVersion.objects.for_actor(actor, "ems:DescribeModelConfigVersions")
        .filter(config=config)
        .select_related("runtime", "config__region", "created_by__user")
        .order_by("number")
    )


def buckets(*, actor) -> list[BucketInfo]:
    authz.check(actor, "storage:ListBuckets", bucket_resource(actor.tenant, "*"))
    return tenant_storage(actor.tenant).list_buckets()


def bucket_info(*, actor, bucket: str, action: str = "storage:ListObjects") -> BucketInfo:
    """The tenant's bucket; raises ``AccessRefused``/``NotFound`` for any other name."""
    authz.check(actor, action, bucket_resource(actor.tenant, bucket))
    return tenant_storage(actor.tenant).bucket_info(bucket)


def bucket_objects(
    *,
    actor,
    bucket: str,
    prefix: str = "",
    token: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Page:
    """One page of a folder: raises ``AccessRefused``/``NotFound`` for buckets not the tenant's."""
    authz.check(actor, "storage:ListObjects", bucket_resource(actor.tenant, bucket))
    storage = tenant_storage(actor.tenant)
    storage.bucket_info(bucket)
    return storage.list_folder(bucket, prefix, page_size=page_size, token=token)


def object_for_download(*, actor, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
    """One file of the tenant's bucket, opened for streaming, with its size.

    Raises ``ValidationError`` (400) for a key that is missing, malformed or names a folder,
    and ``AccessRefused``/``NotFound`` (404) for another tenant's bucket or a missing file."""
    authz.check(actor, "storage:GetObject", bucket_resource(actor.tenant, bucket))
    storage = tenant_storage(actor.tenant)
    storage.bucket_info(bucket)
    if not key:
        raise ValidationError({"key": "Give the file's key, e.g. ?key=out/part-00000.jsonl."})
    if key.endswith("/"):
        raise ValidationError({"key": f"{key} is a folder: give a file's key, or browse it."})
    try:
        check_key(key)
    except AccessRefused as exc:
        raise ValidationError({"key": str(exc)}) from None
    try:
        info = storage.stat(bucket, key)
    except NotFound:
        inside = storage.list_folder(bucket, key + "/", page_size=1)
        if inside.folders or inside.objects:
            message = f"{key} is a folder: give a file's key, or browse it."
            raise ValidationError({"key": message}) from None
        raise
    stream = storage.open(bucket, key)
    # A local file replaced between stat and open: the length of the one opened. (S3's body
    # has no file number; its GET is of one whole version anyway.)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        info = replace(info, size=os.fstat(stream.fileno()).st_size)
    return info, stream
