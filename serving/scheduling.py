"""Placing instances on a group's nodes: capacity claimed with conditional UPDATEs.

``claim(group, size)`` picks the node with the most free CPU that fits and raises its
``claimed_*`` columns with one ``UPDATE … WHERE claimed + need <= capacity``; when two deploys
race for the last capacity, the database lets exactly one UPDATE match and the other tries the
next node (or fails with a clear message). This works the same on SQLite (no row locks) and
PostgreSQL, and the node's check constraint backs it up. Releases are the mirror UPDATE, done
once per instance (``Instance.holds_claim`` flips with a conditional UPDATE first).
"""

from __future__ import annotations

import time

from django.db import OperationalError
from django.db.models import F

from serving.models import Instance, Node, ResourceGroup

# Public-group quota types: one unit is (millicores, MiB, GPUs); an instance is count x unit.
QUOTA_TYPES = {
    "cpu": {"label": "CPU quota (1 core / 2 GiB)", "unit": (1000, 2048, 0)},
    "gpu": {"label": "GPU quota (1 GPU / 4 cores / 16 GiB)", "unit": (4000, 16384, 1)},
}
MIN_CPU, MAX_CPU = 100, 256000
MIN_MEMORY, MAX_MEMORY = 128, 1024 * 1024


class InsufficientResources(Exception):
    """The group cannot hold the instance: permanent until capacity is freed or added."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def fmt_size(size: tuple[int, int, int]) -> str:
    cpu, memory, gpus = size
    text = f"{cpu}m CPU, {memory} MiB memory"
    return text + (f", {gpus} GPU" if gpus else "")


def quota_size(quota_type: str, count: int) -> tuple[int, int, int]:
    unit = QUOTA_TYPES[quota_type]["unit"]
    return (unit[0] * count, unit[1] * count, unit[2] * count)


def schedulable(group: ResourceGroup):
    """The nodes that take new instances: active and ``up`` (not draining, not down), and
    whose engine answered its last ping (``serving.nodes.check_nodes``)."""
    return group.nodes.filter(is_active=True, state=Node.UP, unreachable_since__isnull=True)


def check_fits_group(group: ResourceGroup, size: tuple[int, int, int]) -> None:
    """Refuse sizes no node of the group could ever hold (e.g. a GPU on a CPU-only group)."""
    nodes = list(schedulable(group))
    if not nodes:
        if group.nodes.filter(is_active=True).exists():
            raise InsufficientResources(
                f"insufficient resources: no node of the group {group.name} takes new "
                "instances (draining or down)"
            )
        raise InsufficientResources(f"insufficient resources: the group {group.name} has no nodes")
    gpus_total = sum(node.capacity_gpus for node in nodes)
    if size[2] and gpus_total == 0:
        raise InsufficientResources(f"needs {size[2]} GPU, the group {group.name} has 0")
    if not any(
        size[0] <= n.capacity_cpu_millicores
        and size[1] <= n.capacity_memory_mib
        and size[2] <= n.capacity_gpus
        for n in nodes
    ):
        biggest = max(nodes, key=lambda n: (n.capacity_cpu_millicores, n.capacity_memory_mib))
        raise InsufficientResources(
            f"insufficient resources: needs {fmt_size(size)} per instance; the largest node of "
            f"{group.name} has {fmt_size((biggest.capacity_cpu_millicores, biggest.capacity_memory_mib, biggest.capacity_gpus))}"  # noqa: E501
        )


def claim(group: ResourceGroup, size: tuple[int, int, int]) -> Node:
    """Claim ``size`` on one node of ``group``; raises InsufficientResources."""
    cpu, memory, gpus = size
    check_fits_group(group, size)
    candidates = sorted(
        schedulable(group),
        key=lambda n: (-(n.capacity_cpu_millicores - n.claimed_cpu_millicores), n.pk),
    )
    for node in candidates:
        won = _conditional_claim(node, cpu, memory, gpus)
        if won == 1:
            node.refresh_from_db()
            return node
    free = group.capacity()
    best = max(
        (n for n in schedulable(group)),
        key=lambda n: n.free,
        default=None,
    )
    best_text = fmt_size(best.free) if best else "nothing"
    raise InsufficientResources(
        f"insufficient resources: needs {fmt_size(size)}, free {best_text} on the best node of "
        f"{group.name} ({free['cpu_free']}m CPU, {free['memory_free']} MiB, "
        f"{free['gpus_free']} GPU free in the group)"
    )


def _conditional_claim(node: Node, cpu: int, memory: int, gpus: int) -> int:
    """One conditional UPDATE; SQLite's "locked" answers (a writer holds the file past the busy
    timeout, or shared-cache table locks) are retried briefly: they mean "try again"."""
    for attempt in range(50):
        try:
            return Node.objects.filter(
                pk=node.pk,
                is_active=True,
                state=Node.UP,
                claimed_cpu_millicores__lte=F("capacity_cpu_millicores") - cpu,
                claimed_memory_mib__lte=F("capacity_memory_mib") - memory,
                claimed_gpus__lte=F("capacity_gpus") - gpus,
            ).update(
                claimed_cpu_millicores=F("claimed_cpu_millicores") + cpu,
                claimed_memory_mib=F("claimed_memory_mib") + memory,
                claimed_gpus=F("claimed_gpus") + gpus,
            )
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.01 * (attempt + 1))
    return 0


def claim_many(group: ResourceGroup, size: tuple[int, int, int], count: int) -> list[Node]:
    """Claim ``count`` instances of ``size``; all or nothing (the caller's atomic block rolls
    back the partial claims when this raises)."""
    nodes = []
    for index in range(count):
        try:
            nodes.append(claim(group, size))
        except InsufficientResources as exc:
            if count > 1:
                raise InsufficientResources(
                    f"{exc.message} — {index} of the {count} instances fit"
                ) from None
            raise
    return nodes


def release(instance: Instance) -> bool:
    """Give the instance's claim back, exactly once."""
    if not Instance.objects.filter(pk=instance.pk, holds_claim=True).update(holds_claim=False):
        return False
    instance.holds_claim = False
    Node.objects.filter(pk=instance.node_id).update(
        claimed_cpu_millicores=F("claimed_cpu_millicores") - instance.cpu_millicores,
        claimed_memory_mib=F("claimed_memory_mib") - instance.memory_mib,
        claimed_gpus=F("claimed_gpus") - instance.gpus,
    )
    return True


def transfer(old: Instance, new: Instance) -> bool:
    """Hand ``old``'s claim to its replacement ``new`` (same node, same size)."""
    if not Instance.objects.filter(pk=old.pk, holds_claim=True).update(holds_claim=False):
        return False
    old.holds_claim = False
    return True
