"""Read queries of the serving app, always through the tenant-scoping choke point."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count

from serving.backends import BackendError, for_node
from serving.models import Instance, ResourceGroup, Service


def resource_groups(*, actor):
    return (
        ResourceGroup.objects.for_actor(actor, "ems:DescribeResourceGroups")
        .filter(is_active=True)
        .select_related("region")
    )


def services(*, actor, action: str = "ems:DescribeServices"):
    return (
        Service.objects.for_actor(actor, action)
        .select_related("region", "group", "config", "revision__version__runtime")
        .order_by("-created_at")
    )


class KeysFirstPaginator(Paginator):
    """Pages of a long, joined list (a tenant's 10,000 services): the page's primary keys first
    — a walk of the list's index past the offset, no joins — then only those rows with their
    joins. A plain ``OFFSET`` makes the database join every skipped row too."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        keys = list(self.object_list.values_list("pk", flat=True)[bottom:top])
        rows = {row.pk: row for row in self.object_list.filter(pk__in=keys)}
        return self._get_page([rows[k] for k in keys if k in rows], number, self)


def count_ready(services: list[Service]) -> list[Service]:
    """Sets ``instances_ready_count`` (running instances) on each service with one query."""
    counts = dict(
        Instance.objects.filter(service__in=services, state=Instance.RUNNING)
        .order_by()
        .values_list("service_id")
        .annotate(n=Count("pk"))
        .values_list("service_id", "n")
    )
    for row in services:
        row.instances_ready_count = counts.get(row.pk, 0)
    return services


def service(*, actor, service_id: str, action: str = "ems:DescribeService") -> Service:
    return services(actor=actor, action=action).get(service_id=service_id)


def instances(*, service: Service, live_only: bool = False):
    rows = service.instances.select_related("node", "revision__version").order_by("-created_at")
    return rows.filter(state__in=Instance.LIVE) if live_only else rows


def logs(*, service: Service, tail: int = 100) -> list[dict]:
    """The last lines of each live instance's runtime output."""
    result = []
    for instance in instances(service=service, live_only=True):
        try:
            text = for_node(instance.node).logs(instance.instance_id, tail=tail)
        except BackendError as exc:
            text = f"(logs unavailable: {exc.message})"
        result.append({"instance_id": instance.instance_id, "lines": text.splitlines()[-tail:]})
    return result


def rollback_target(service):
    """The revision a rollback returns to: the newest earlier one that differs from the current
    (in version or size), or None."""
    current = service.revision
    if current is None:
        return None
    return (
        service.revisions.filter(number__lt=current.number)
        .exclude(
            version_id=current.version_id,
            cpu_millicores=current.cpu_millicores,
            memory_mib=current.memory_mib,
            gpus=current.gpus,
        )
        .select_related("version")
        .order_by("-number")
        .first()
    )
