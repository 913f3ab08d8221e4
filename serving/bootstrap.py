"""The serving bootstrap step: a public resource group per region with the local node, and the
beat schedule of the reconciler. Idempotent."""

from __future__ import annotations

import os

from django.conf import settings

from models_repo.models import Region
from serving.models import Node, ResourceGroup

RECONCILE_EVERY_SECONDS = 15
WAKE_EVERY_SECONDS = 1  # a request held at a gateway waits at most this long to be noticed


def _local_capacity() -> tuple[int, int]:
    cpus = os.cpu_count() or 1
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = pages // (1024 * 1024)
    except (ValueError, OSError, AttributeError):
        memory = 4096
    return cpus * 1000, int(memory)


def run(*, demo: bool, log) -> None:
    backend = (
        settings.EMS_RUNTIME_BACKEND
        if settings.EMS_RUNTIME_BACKEND in (Node.DOCKER, Node.PROCESS)
        else Node.DOCKER
    )
    cpu, memory = _local_capacity()
    for region in Region.objects.filter(is_active=True):
        group, created = ResourceGroup.objects.get_or_create(
            region=region,
            name=f"public-{region.name}",
            defaults={
                "kind": ResourceGroup.PUBLIC,
                "description": f"The platform's public resource group in {region.name}.",
            },
        )
        if created:
            log(f"added public resource group {group.name}")
        if not group.nodes.exists():
            node = Node.objects.create(
                group=group,
                name=f"local-{region.name}",
                backend=backend,
                capacity_cpu_millicores=cpu,
                capacity_memory_mib=memory,
            )
            log(f"added node {node.name} ({backend}, {cpu}m CPU, {memory} MiB)")
    _beat(log)


def _beat(log) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(
        every=RECONCILE_EVERY_SECONDS, period=IntervalSchedule.SECONDS
    )
    _, created = PeriodicTask.objects.update_or_create(
        name="serving: reconcile all services",
        defaults={"task": "serving.reconcile_all", "interval": every, "enabled": True},
    )
    if created:
        log(f"scheduled serving.reconcile_all every {RECONCILE_EVERY_SECONDS} s")
    # health of running instances: fast, and a round not started in time is dropped (the next
    # one is due anyway), so a backlog never builds up while no worker runs
    probe_every = settings.EMS_HEALTH_PROBE_INTERVAL
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=probe_every, period=IntervalSchedule.SECONDS
    )
    _, created = PeriodicTask.objects.update_or_create(
        name="serving: probe running instances",
        defaults={
            "task": "serving.probe_instances",
            "interval": interval,
            "enabled": True,
            "expire_seconds": max(2, 2 * probe_every),
        },
    )
    if created:
        log(f"scheduled serving.probe_instances every {probe_every} s")
    for name, task, seconds in (
        ("serving: metrics and autoscaling", "serving.poll_metrics", settings.EMS_METRICS_INTERVAL),
        ("serving: wake sleeping services", "serving.wake_services", WAKE_EVERY_SECONDS),
        # batch jobs: re-queue parts whose worker died, assemble, end (serving/jobs/runner.py)
        ("serving: batch jobs sweep", "serving.jobs_sweep", settings.EMS_JOB_SWEEP_SECONDS),
    ):
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        _, created = PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )
        if created:
            log(f"scheduled {task} every {seconds} s")
