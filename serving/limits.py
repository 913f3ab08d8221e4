"""How many instances a service may have: the one place scaling asks.

``allowed_replicas(service, wanted)`` returns the count the autoscaler may go to and, when it is
less than ``wanted``, what held it (for the ``capped`` event). Today that is the resource
group's free capacity (how many more instances of the current revision's size fit on its active
nodes), then billing's limits (``billing.limits.replicas_allowed``: an expired dedicated-group
purchase, a spent budget set to stop at 100 %, the quota limit of the sub-account that deployed
it), each named in the reason.
"""

from __future__ import annotations

from billing import limits as billing_limits
from serving.models import Instance, Service


def _fits(service: Service) -> int:
    cpu, memory, gpus = service.revision.size
    total = 0
    for node in service.group.nodes.filter(is_active=True, state="up"):
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
    # billing: an expired purchase, a spent budget that stops at 100 %, a sub-account's quota
    allowed, why = billing_limits.replicas_allowed(service, wanted)
    if allowed < wanted:
        return allowed, why
    return wanted, ""
