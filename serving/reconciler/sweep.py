"""Passes over everything (beat's ``serving.reconcile_all``) and the node sweep: orphaned
containers removed, the model cache (and a remote node's model volumes) garbage-collected."""

from __future__ import annotations

import logging

from serving.backends import BackendError, for_node
from serving.backends.base import LABEL_MODEL
from serving.models import Instance, Node, Service
from serving.reconciler import support
from serving.reconciler.core import reconcile

log = logging.getLogger(__name__)


def reconcile_all() -> dict:
    """Every live service (and every service still holding instances), then every node."""
    results = {}
    pks = set(Service.objects.filter(deleted_at__isnull=True).values_list("pk", flat=True))
    pks |= set(
        Instance.objects.filter(state__in=Instance.LIVE).values_list("service_id", flat=True)
    )
    for pk in sorted(pks):
        try:
            results[pk] = reconcile(pk)
        except Exception:
            log.exception("reconcile of service %s failed", pk)
            results[pk] = "error"
    for node in Node.objects.filter(is_active=True).exclude(state=Node.DOWN):
        try:
            sweep_node(node)
        except BackendError as exc:
            log.warning("sweeping node %s failed: %s", node.name, exc)
    return results


def sweep_node(node: Node, *, cache_min_age: float = 600.0) -> list[str]:
    """Remove labelled instances of the node that the database does not know as live; then
    garbage-collect the model cache. Returns the removed instance ids."""
    backend = for_node(node)
    known = set(
        Instance.objects.filter(node=node, state__in=Instance.LIVE).values_list(
            "instance_id", flat=True
        )
    )
    removed = []
    in_use = set()
    for status in backend.list():
        if status.instance_id in known:
            in_use.add(status.labels.get(LABEL_MODEL, ""))
            continue
        backend.stop(status.instance_id, grace=0)
        removed.append(status.instance_id)
    in_use |= set(
        Instance.objects.filter(node=node, state__in=Instance.LIVE).values_list(
            "revision__version__manifest_digest", flat=True
        )
    )
    support.cache_for(node).gc(in_use, min_age=cache_min_age)
    gc_models = getattr(backend, "gc_models", None)
    if gc_models is not None:  # the model volumes of a node on another host
        gc_models(in_use, min_age=cache_min_age)
    return removed
