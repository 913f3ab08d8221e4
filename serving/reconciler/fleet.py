"""The pass over every service (``reconcile_all``: beat's every 15 s, and every worker once when
it starts), built to stay within a beat period at 10,000 services on 100 nodes.

A per-service pass costs a lease (two committed writes), about ten queries, a listing of every
node of its group and a route-store round trip — for a service that needs nothing. So the
fleet pass first looks at everything at once, in a fixed number of queries and one listing per
node:

1. **list every node once** (``Listing``), before reading the database;
2. read every service that is live or still holds instances, and every live instance (two
   queries);
3. a service is **quiet** when the database and the listing already agree with what it wants
   (``quiet``): every live instance runs the current revision, is listed running at its
   recorded address and was not taken out by the health probe, the count is the desired one,
   no other labelled instance of it is listed, no pass holds its lease, and the status a pass
   would derive (``support.derive_status``) is the one it has. A quiet service is ``idle``
   without a lease or a write — a pass would have changed nothing. Every other service gets
   the full pass (``core.reconcile``, under its lease, reading the backends live), which uses
   the listing only to find orphans (each confirmed with ``inspect`` before it is removed);
4. the services that need work get their full passes a few at a time (threads, each with its
   own connection: ``EMS_SERVING_RECONCILE_THREADS``), so their committed writes and backend
   calls overlap;
5. then sweep every node from the same listing (instances unknown to the database, model cache GC)
   with two queries for all nodes;
6. publish every route at once (``serving.publish.publish_all``): the repair a quiet pass did
   per service, now one read and one pipelined write of the store.

The state a quiet service was judged on is read without its lease; a change made meanwhile
queues its own pass (``transaction.on_commit``) and beat looks again in 15 s, so nothing waits
on this one. Instances that crash are found by the health probe (``serving.health``, every
second), which takes them out of the routes and queues their service's pass.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from django.conf import settings
from django.db import connection, connections
from django.db.models import Q
from django.utils import timezone

from serving import publish
from serving.backends import BackendError, for_node
from serving.backends.base import LABEL_MODEL, LABEL_SERVICE, RUNNING
from serving.models import Instance, Node, Service
from serving.reconciler import support
from serving.reconciler.core import BUSY, IDLE, reconcile

log = logging.getLogger(__name__)


class Listing:
    """Every node's instances as its backend listed them, once, at the start of a fleet pass."""

    def __init__(self, nodes: list[Node], *, strict: bool = False):
        self.nodes = {node.pk: node for node in nodes}
        self.by_group: dict[int, list[Node]] = defaultdict(list)
        for node in nodes:
            self.by_group[node.group_id].append(node)
        self.statuses: dict[int, dict] = {}  # node pk -> {instance id: status}
        self.by_service: dict[str, list] = defaultdict(list)  # service id -> [(node pk, status)]
        self.failed: set[int] = set()
        for node in nodes:
            if node.state == Node.DOWN:
                continue  # its engine does not answer (serving.nodes); nothing to list there
            try:
                listed = for_node(node).list()
            except BackendError as exc:
                if strict:
                    raise
                log.warning("listing node %s failed: %s", node.name, exc)
                self.failed.add(node.pk)
                continue
            self.statuses[node.pk] = {status.instance_id: status for status in listed}
            for status in listed:
                self.by_service[status.labels.get(LABEL_SERVICE, "")].append((node.pk, status))

    def group_nodes(self, group_id: int) -> list[Node] | None:
        return self.by_group.get(group_id)

    def of_service(self, node: Node, service_id: str) -> list | None:
        """The node's listed instances of the service; None when the node was not listed."""
        if node.pk not in self.statuses:
            return None
        return [status for pk, status in self.by_service.get(service_id, ()) if pk == node.pk]


def quiet(service: Service, live: list[Instance], listing: Listing, now) -> bool:
    """True when a pass would change nothing for the service (see the module docstring)."""
    if service.lease_until is not None and service.lease_until > now:
        return False  # a pass runs: let reconcile answer busy (its follow-ups look again)
    if any(
        pk in listing.failed for pk in {n.pk for n in listing.by_group.get(service.group_id, ())}
    ):
        return False
    if service.desired != Service.RUN or service.status == Service.FAILED:
        if live:
            return False
    elif len(live) != service.replicas:
        return False
    for instance in live:
        listed = listing.statuses.get(instance.node_id, {}).get(instance.instance_id)
        if (
            instance.state != Instance.RUNNING
            or instance.revision_id != service.revision_id
            or instance.unhealthy_reason
            or listed is None
            or listed.state != RUNNING
            or listed.address != instance.address
        ):
            return False
    known = {instance.instance_id for instance in live}
    if any(
        status.instance_id not in known
        for _, status in listing.by_service.get(service.service_id, ())
    ):
        return False  # an orphan to remove
    return support.derive_status(service, live)[0] == service.status


def reconcile_all() -> dict:
    """Every live service (and every service still holding instances), then every node, then
    every route. Returns ``{service pk: busy | progressing | idle | error}``."""
    nodes = list(Node.objects.all())
    listing = Listing(nodes)  # before the database is read: see sweep_nodes
    live_instances = Instance.objects.filter(state__in=Instance.LIVE)
    services = Service.objects.filter(
        Q(deleted_at__isnull=True) | Q(pk__in=live_instances.values("service_id"))
    ).order_by("pk")
    by_service: dict[int, list[Instance]] = defaultdict(list)
    for instance in live_instances.only(
        "pk", "service_id", "revision_id", "node_id", "instance_id", "state", "address",
        "unhealthy_reason",
    ):  # fmt: skip
        by_service[instance.service_id].append(instance)
    results, work = {}, []
    now = timezone.now()
    for service in services:
        if quiet(service, by_service.get(service.pk, []), listing, now):
            results[service.pk] = IDLE
        else:
            work.append(service.pk)
    results.update(_passes(work, listing))
    sweep_nodes([n for n in nodes if n.is_active], listing)
    try:
        publish.publish_all()
    except Exception:  # a route store outage must never stop the reconciler
        log.exception("publishing every route failed")
    return results


def _one(service_pk: int, listing: Listing) -> str:
    try:
        return reconcile(service_pk, listing=listing)
    except Exception:
        log.exception("reconcile of service %s failed", service_pk)
        return "error"


def _passes(pks: list[int], listing: Listing) -> dict[int, str]:
    """The full passes, ``EMS_SERVING_RECONCILE_THREADS`` at a time: each pass waits mostly on
    its committed writes and the backends, so passes of different services (each under its
    own lease) overlap those waits. Inside an outer transaction (tests on one connection)
    other connections could not see its rows: one by one there."""
    threads = min(settings.EMS_SERVING_RECONCILE_THREADS, len(pks))
    if threads <= 1 or connection.in_atomic_block:
        return {pk: _one(pk, listing) for pk in pks}
    queue = iter(pks)
    lock = threading.Lock()
    results: dict[int, str] = {}

    def work() -> None:
        try:
            while True:
                with lock:
                    pk = next(queue, None)
                if pk is None:
                    return
                results[pk] = _one(pk, listing)
        finally:
            connections.close_all()  # this thread's own connection

    pool = [threading.Thread(target=work, name=f"reconcile-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return results


def sweep_nodes(nodes: list[Node], listing: Listing, *, cache_min_age: float = 600.0) -> list[str]:
    """``core.sweep_node`` for many nodes from one listing: remove listed instances the database
    does not know as live (it is read after the listing, so an instance launched in between is
    known), then garbage-collect each node's model cache. Returns the removed instance ids."""
    known = defaultdict(set)
    in_use = defaultdict(set)
    rows = Instance.objects.filter(state__in=Instance.LIVE).values_list(
        "node_id", "instance_id", "revision__version__manifest_digest"
    )
    for node_pk, instance_id, digest in rows:
        known[node_pk].add(instance_id)
        in_use[node_pk].add(digest)
    removed = []
    for node in nodes:
        if node.pk not in listing.statuses:
            continue  # its listing failed (logged): next time
        backend = for_node(node)
        try:
            for instance_id, status in listing.statuses[node.pk].items():
                if instance_id in known[node.pk]:
                    in_use[node.pk].add(status.labels.get(LABEL_MODEL, ""))
                    continue
                backend.stop(instance_id, grace=0)
                removed.append(instance_id)
            support.cache_for(node).gc(in_use[node.pk], min_age=cache_min_age)
            gc_models = getattr(backend, "gc_models", None)
            if gc_models is not None:  # the model volumes of a node on another host
                gc_models(in_use[node.pk], min_age=cache_min_age)
        except BackendError as exc:
            log.warning("sweeping node %s failed: %s", node.name, exc)
    return removed


def sweep_node(node: Node, *, cache_min_age: float = 600.0) -> list[str]:
    """Remove labelled instances of the node that the database does not know as live; then
    garbage-collect the model cache. Returns the removed instance ids. Raises BackendError
    when the node cannot be listed."""
    return sweep_nodes([node], Listing([node], strict=True), cache_min_age=cache_min_age)


__all__ = ["BUSY", "IDLE", "Listing", "quiet", "reconcile_all", "sweep_node", "sweep_nodes"]
