"""The route publisher: turns a service's rows into its gateway route (``gateway.routes``).

The reconciler calls it directly (``after_pass`` and ``drain``); the token and auth services too:

* ``publish_service(service)`` — after every reconcile pass and every token / auth change: the
  full route (instances in state ``running`` that their health probe has not taken out
  (``serving.health``) → ``healthy`` at their address; a stopped service
  has none, so callers get 503; a deleted one is removed, so callers get 404). The record is
  compared with what the store holds and only written when it differs, so calling it on every
  pass is cheap and heals a publish that failed (a Redis outage) on the next pass.
* ``drain(service, instance_ids)`` — before instances stop: publish the route without them, then
  wait until every live gateway has applied that generation and has nothing in flight to them
  (``RouteStore.wait_drained``, up to ``EMS_GATEWAY_DRAIN_TIMEOUT``). Then the reconciler sends
  SIGTERM. Store errors are logged and never stop the reconciler.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.utils import timezone

from gateway.routes import RouteStore, make_route, open_store
from serving.models import Instance, Service, ServiceToken

log = logging.getLogger(__name__)

NO_TOKEN = "0" * 64
_stores: dict[str, RouteStore] = {}
_lock = threading.Lock()


def store() -> RouteStore:
    """The route store of ``settings.EMS_GATEWAY_ROUTES``, one per process (and URL)."""
    url = settings.EMS_GATEWAY_ROUTES
    with _lock:
        if url not in _stores:
            _stores[url] = open_store(url)
        return _stores[url]


def reset_stores() -> None:
    with _lock:
        for item in _stores.values():
            item.close()
        _stores.clear()


def live_tokens(service) -> tuple[list[str], dict[str, float]]:
    """The hashes the route accepts now, with the expiries of those in their grace period."""
    rows = service.tokens.filter(revoked_at__isnull=True).order_by("-created_at", "-pk")
    return _token_fields(rows.values_list("sha256", "not_after"))


def _token_fields(rows) -> tuple[list[str], dict[str, float]]:
    """``rows``: (sha256, not_after) of unrevoked tokens, newest first."""
    now = timezone.now()
    hashes, not_after = [], {}
    for sha256, until in rows:
        if until is not None:
            if until <= now:
                continue
            not_after[sha256] = until.timestamp()
        hashes.append(sha256)
    return hashes, not_after


def route_for(service, *, exclude: set[str] | frozenset = frozenset()) -> dict | None:
    """The service's route record, or None when it has none (deleted, or the backing service
    of a batch job: its instances are reached by the job's runner, never through a gateway)."""
    if (
        service.deleted_at is not None
        or service.desired == Service.DELETE
        or service.kind == Service.BATCH
    ):
        return None
    running = []
    if service.desired == Service.RUN:
        running = _routable(service.instances.all()).values_list("instance_id", "address")
    tokens = live_tokens(service) if service.auth_enabled else ([], {})
    return _route(service, [i for i in running if i[0] not in exclude], tokens)


def _routable(instances):
    """Running instances the health probe has not taken out, in route order."""
    return (
        instances.filter(state=Instance.RUNNING, unhealthy_reason="")
        .exclude(address="")
        .order_by("created_at", "pk")
    )


def _route(service, running, tokens) -> dict:
    """The record from the service's row (tenant loaded), its routable instances as
    ``(instance id, address)`` and its live tokens (``_token_fields``)."""
    hashes, not_after = tokens
    if service.auth_enabled and not hashes:
        # auth on and every token revoked: a hash with no known preimage, so every caller
        # gets 401 (and the record stays the same from pass to pass)
        hashes = [NO_TOKEN]
    tenant = service.tenant
    return make_route(
        service_id=service.service_id,
        tenant_id=service.tenant_id,
        auth=service.auth_enabled,
        token_sha256=hashes,
        token_not_after=not_after,
        instances=[{"id": iid, "url": url, "state": "healthy"} for iid, url in running],
        wake=scales_to_zero(service),
        # a suspended tenant's endpoints answer 403 with the reason, at the gateway
        refuse=tenant.suspension_message if tenant.is_suspended else "",
    )


def scales_to_zero(service) -> bool:
    """An automatic running service with minimum 0: gateways hold its requests while it has
    no instance and ask the control plane to wake it (gateway/wake.py)."""
    from serving.models import Service

    return (
        service.scaling_mode == Service.AUTO
        and service.desired == Service.RUN
        and int((service.autoscale or {}).get("min", 1)) == 0
    )


def publish_service(service, *, exclude=frozenset(), force: bool = False) -> int | None:
    """Publish the service's full route (or remove it); returns the store's generation after it.

    Raises the store's errors (the hook seam logs them; the next pass publishes again).
    """
    service = Service.objects.select_related("tenant").get(pk=service.pk)
    target = store()
    route = route_for(service, exclude=set(exclude))
    current = target.get(service.service_id)
    if route is None:
        if current is None and not force:
            return target.generation()
        return target.delete(service.service_id)
    if not force and current is not None and _equivalent(current, route):
        return current.get("generation", target.generation())
    return target.publish(route)


def publish_all() -> dict[str, int]:
    """Every service's route at once (beat's pass over every service ends with it; it repairs
    any route an earlier publish failed to write). A fixed number of queries — services with
    their tenants, routable instances, live tokens — and one read and one pipelined write of
    the store, whatever the number of services. Only records that differ are written, each on
    the condition that the store still holds the record read first (``publish_many``): the
    store is read *before* the database, so a route another pass publishes meanwhile is
    newer than this one's view and is left alone. Returns counts (``written``, ``deleted``,
    ``unchanged``)."""
    target = store()
    stored = target.all()
    services = list(
        Service.objects.filter(deleted_at__isnull=True)
        .exclude(desired=Service.DELETE)
        .exclude(kind=Service.BATCH)  # a batch job's instances are never behind a gateway
        .select_related("tenant")
        .order_by("pk")
    )
    running: dict[int, list] = {}
    rows = _routable(
        Instance.objects.filter(service__deleted_at__isnull=True, service__desired=Service.RUN)
    )
    for service_pk, iid, address in rows.values_list("service_id", "instance_id", "address"):
        running.setdefault(service_pk, []).append((iid, address))
    tokens: dict[int, list] = {}
    live = ServiceToken.objects.filter(
        revoked_at__isnull=True, service__auth_enabled=True, service__deleted_at__isnull=True
    ).order_by("service_id", "-created_at", "-pk")
    for service_pk, sha256, until in live.values_list("service_id", "sha256", "not_after"):
        tokens.setdefault(service_pk, []).append((sha256, until))
    changes, unchanged, wanted = [], 0, set()
    for service in services:
        wanted.add(service.service_id)
        hashes = _token_fields(tokens.get(service.pk, ())) if service.auth_enabled else ([], {})
        route = _route(service, running.get(service.pk, ()), hashes)
        current = stored.get(service.service_id)
        if current is not None and _equivalent(current, route):
            unchanged += 1
            continue
        changes.append((service.service_id, int((current or {}).get("generation", 0)), route))
    written = len(changes)
    # routes of services deleted (or being deleted) since: removed
    strays = [sid for sid in stored if sid not in wanted]
    gone = Service.objects.filter(service_id__in=strays).values_list("service_id", flat=True)
    for sid in gone:
        changes.append((sid, int(stored[sid].get("generation", 0)), None))
    target.publish_many(changes)
    return {"written": written, "deleted": len(changes) - written, "unchanged": unchanged}


def _equivalent(current: dict, route: dict) -> bool:
    """Same record apart from the generation."""
    return {k: v for k, v in current.items() if k != "generation"} == {
        k: v for k, v in route.items() if k != "generation"
    }


def after_pass(service, *, changed: bool) -> None:
    """After a reconcile pass (outside any transaction): a pass that changed the instances
    publishes the route; a quiet pass compares the stored route and repairs it when an earlier
    publish failed (Redis was down). Never raises: the next pass tries again."""
    try:
        publish_service(service)
    except Exception:  # a route store outage must never stop the reconciler
        log.exception(
            "publishing the route of %s after a %s pass failed",
            service.service_id,
            "changing" if changed else "quiet",
        )


def drain(service, instance_ids) -> bool:
    """Take the instances out of the route and wait until the gateways have nothing in flight
    to them. True when drained (or no gateway is live), False on a timeout or a store error."""
    ids = list(instance_ids)
    if not ids:
        return True
    try:
        generation = publish_service(service, exclude=set(ids))
        if generation is None:
            return True
        drained = store().wait_drained(ids, generation, timeout=settings.EMS_GATEWAY_DRAIN_TIMEOUT)
    except Exception:
        log.exception("draining %s of %s failed", ids, service.service_id)
        return False
    if not drained:
        log.warning(
            "gateways did not drain %s of %s within %s s",
            ids,
            service.service_id,
            settings.EMS_GATEWAY_DRAIN_TIMEOUT,
        )
    return drained
