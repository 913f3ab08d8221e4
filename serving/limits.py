"""How many instances a service may have: the one place scaling asks.

``allowed_replicas(service, wanted)`` returns the count the autoscaler may go to and, when it is
less than ``wanted``, what held it (for the ``capped`` event). Today that is the resource
group's free capacity (how many more instances of the current revision's size fit on its active
nodes). **Billing's quotas plug in here**: add a check after the capacity one that lowers
``allowed`` and names the quota (e.g. "the tenant's CPU quota of 8 units").
"""

from __future__ import annotations

from serving.models import Instance, Service


def _fits(service: Service) -> int:
    cpu, memory, gpus = service.revision.size
    total = 0
    for node in service.group.nodes.filter(is_active=True):
        free_cpu, free_memory, free_gpus = node.free
        n = min(free_cpu // max(cpu, 1), free_memory // max(memory, 1))
        if gpus:
            n = min(n, free_gpus // gpus)
        total += max(0, n)
    return total


def allowed_replicas(service: Service, wanted: int) -> tuple[int, str]:
    """(count allowed, what limited it — "" when nothing did)."""
    holding = service.instances.filter(revision=service.revision, state__in=Instance.ACTIVE).count()
    if wanted <= holding:
        return wanted, ""
    fits = _fits(service)
    if holding + fits < wanted:
        return holding + fits, f"the free capacity of the resource group {service.group.name}"
    # Billing: a quota check goes here (lower the count, name the quota).
    return wanted, ""
