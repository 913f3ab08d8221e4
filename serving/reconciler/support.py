"""What the reconciler needs from outside: runtime images, model files, the lease."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from models_repo.services import check_version_unchanged, tenant_storage
from runtimes.images.tag import image_tag
from serving.backends import BackendError, InstanceSpec
from serving.modelcache import ModelCache
from serving.models import Instance, Node, Service

LEASE_SECONDS = 120


@functools.lru_cache(maxsize=32)
def _print_tag(runtime: str) -> str:
    """The platform runtime's image tag (``runtimes/images/tag.py``, as the build names it)."""
    try:
        return image_tag(runtime)
    except OSError as exc:  # an unknown runtime, or the runtimes/ sources are unreadable
        raise BackendError(f"cannot name the image of runtime {runtime}: {exc}") from None


def image_for(runtime_env) -> str:
    """``ems-runtime-<runtime>:<hash of its inputs>`` for platform runtimes (so a changed
    runtime never runs on a stale image); a custom runtime's image as the tenant gave it."""
    image = runtime_env.image or f"ems-runtime-{runtime_env.runtime}"
    if ":" in image.rsplit("/", 1)[-1] or "@" in image:
        return image
    if runtime_env.tenant_id is None:
        return _print_tag(runtime_env.runtime)
    return f"{image}:latest"


def spec_for(instance: Instance, node: Node) -> InstanceSpec:
    version = instance.revision.version
    runtime_env = version.runtime
    return InstanceSpec(
        service_id=instance.service.service_id,
        instance_id=instance.instance_id,
        tenant_id=str(instance.service.tenant.app_id),
        runtime=runtime_env.runtime,
        model_digest=version.manifest_digest,
        image=image_for(runtime_env) if node.backend == Node.DOCKER else "",
        cpu_millicores=instance.cpu_millicores,
        memory_mib=instance.memory_mib,
        gpus=instance.gpus,
    )


def cache_for(node: Node) -> ModelCache:
    return ModelCache(node.cache_root())


def fetch_model(node: Node, version) -> tuple[Path, bool]:
    """The version's folder in the node's cache (filled from object storage once)."""
    cache = cache_for(node)
    existing = cache.path(version.manifest_digest)
    if existing is not None:
        return cache.ensure(version.manifest_digest, lambda dest: None), False
    check_version_unchanged(version)
    storage = tenant_storage(version.tenant)
    path = cache.ensure(
        version.manifest_digest,
        lambda dest: storage.copy_folder(version.bucket, version.key_prefix, dest),
    )
    return path, True


def take_lease(service_pk: int) -> str | None:
    owner = uuid.uuid4().hex
    now = timezone.now()
    won = Service.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=service_pk
    ).update(lease_owner=owner, lease_until=now + dt.timedelta(seconds=LEASE_SECONDS))
    return owner if won else None


def renew_lease(service_pk: int, owner: str) -> bool:
    until = timezone.now() + dt.timedelta(seconds=LEASE_SECONDS)
    return bool(Service.objects.filter(pk=service_pk, lease_owner=owner).update(lease_until=until))


def drop_lease(service_pk: int, owner: str) -> None:
    Service.objects.filter(pk=service_pk, lease_owner=owner).update(
        lease_owner="", lease_until=None
    )


def backoff(failures: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(2 ** max(failures - 1, 0), 60))


def max_failures() -> int:
    return settings.EMS_SERVING_MAX_FAILURES
