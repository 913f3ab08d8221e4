"""What the reconciler needs from outside: runtime images, model files, the lease and its
heartbeat."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection, connections
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from models_repo.services import check_version_unchanged, tenant_storage
from runtimes.images.tag import image_tag
from serving.backends import BackendError, InstanceSpec
from serving.modelcache import ModelCache
from serving.models import Instance, Node, Service

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


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


def lease_seconds() -> int:
    return settings.EMS_SERVING_LEASE_SECONDS


def _until():
    """Now + the lease length, on the database's clock (workers' clocks may differ)."""
    return ExpressionWrapper(
        Now() + dt.timedelta(seconds=lease_seconds()), output_field=DateTimeField()
    )


def take_lease(service_pk: int) -> str | None:
    """The service's reconcile lease (a conditional UPDATE), or None while another pass holds
    it. Short (``EMS_SERVING_LEASE_SECONDS``): a pass keeps it with :class:`Heartbeat`, so a
    killed worker's lease runs out within that time."""
    owner = uuid.uuid4().hex
    won = Service.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=Now()), pk=service_pk
    ).update(lease_owner=owner, lease_until=_until())
    return owner if won else None


def renew_lease(service_pk: int, owner: str) -> bool:
    return bool(
        Service.objects.filter(pk=service_pk, lease_owner=owner).update(lease_until=_until())
    )


def drop_lease(service_pk: int, owner: str) -> None:
    Service.objects.filter(pk=service_pk, lease_owner=owner).update(
        lease_owner="", lease_until=None
    )


class Heartbeat:
    """Renews a held lease every third of its length from a thread, for as long as the pass
    runs — through its long steps too (a drain, a model fetch, a stop's grace period). When a
    renewal finds the lease gone (this process stalled past it and another pass took over),
    ``lost`` is set and the pass stops at its next step.

    Inside an outer transaction (tests on one connection) another connection could not see the
    lease row, so no thread is started there; the pass's own renewals still run.

    ``fresh()``: the lease was confirmed (taken or renewed) so recently that at least two thirds
    of it are left — no other pass can hold it before it runs out, so a step may start without
    one more renewal (a pass with one instance per service would otherwise renew once per
    instance). ``taken_at``: ``time.monotonic()`` read just before the lease was taken."""

    def __init__(self, service_pk: int, owner: str, *, taken_at: float | None = None):
        self.service_pk, self.owner = service_pk, owner
        self.every = max(0.5, lease_seconds() / 3)
        self.lost = False
        self.confirmed_until = 0.0
        if taken_at is not None:
            self.confirm(taken_at)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def confirm(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` (monotonic) succeeded."""
        self.confirmed_until = max(self.confirmed_until, sent_at + lease_seconds())

    def fresh(self) -> bool:
        return time.monotonic() < self.confirmed_until - 2 * lease_seconds() / 3

    def __enter__(self) -> Heartbeat:
        if not connection.in_atomic_block:
            self._thread = threading.Thread(
                target=self._run, name=f"lease-{self.service_pk}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    sent_at = time.monotonic()
                    if renew_lease(self.service_pk, self.owner):
                        self.confirm(sent_at)
                    else:
                        self.lost = True
                        log.warning("lost the reconcile lease of service %s", self.service_pk)
                        return
                except Exception:  # the database is unreachable: try again next beat
                    log.exception("renewing the lease of service %s failed", self.service_pk)
        finally:
            connections.close_all()  # this thread's own connection


def backoff(failures: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(2 ** max(failures - 1, 0), 60))


def max_failures() -> int:
    return settings.EMS_SERVING_MAX_FAILURES


def derive_status(service: Service, live: list[Instance]) -> tuple[str, str]:
    """The status a pass leaves the service in, from its live instances, and the pass's result
    (``progressing`` while instances start, stop or wait for their backoff, else ``idle``)."""
    before = service.status
    busy = any(i.state in (Instance.PENDING, Instance.STARTING, Instance.STOPPING) for i in live)
    if service.desired != Service.RUN:
        status = Service.STOPPING if live else Service.STOPPED
    elif service.status == Service.FAILED:
        status = Service.FAILED
    else:
        current = [i for i in live if i.revision_id == service.revision_id]
        old = [i for i in live if i.revision_id != service.revision_id]
        ready = [i for i in current if i.state == Instance.RUNNING]
        if not old and len(ready) == service.replicas == len(current):
            status = Service.NORMAL
        elif old:
            status = Service.UPDATING
        elif service.failures:
            status = Service.ABNORMAL
        elif before == Service.NORMAL and ready:
            status = Service.NORMAL  # scaling out (or in) while serving stays Normal
        elif before in (Service.WAITING, Service.NORMAL, Service.ABNORMAL):
            status = (
                Service.DEPLOYING
                if any(i.state != Instance.PENDING for i in current) or before != Service.WAITING
                else Service.WAITING
            )
        else:
            status = before
    pending_retry = any(i.state == Instance.PENDING for i in live)
    progressing = (busy or pending_retry) and status != Service.FAILED
    return status, ("progressing" if progressing else "idle")
