"""One metrics pass over every running instance (the Celery task ``serving.poll_metrics``).

Its own periodic task (every ``EMS_METRICS_INTERVAL`` seconds), not part of ``reconcile_all``:
that one walks services one by one and blocks on drains, while this reads **all** instances
in parallel (a thread pool of ``EMS_METRICS_POLL_WORKERS``; the threads only talk to the
backends, never to the database), then the gateways' counters from the route store, and
writes one raw sample per instance and one per service in one ``bulk_create``. The autoscaler
decides on the values of the pass that just ran (``serving.autoscaler.autoscale_all``).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from serving.backends import for_node
from serving.metrics import gpu, series, traffic
from serving.metrics.models import RAW, MetricPoint
from serving.models import Instance, Service

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """What the backend said about one instance (None: not available)."""

    instance_id: str
    service_pk: int
    cpu_percent: float | None = None
    memory_percent: float | None = None
    gpu_percent: float | None = None
    gpu_devices: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class ServiceMetrics:
    """A service's values in one pass: what the autoscaler reads."""

    ready: int  # running instances
    cpu_percent: float | None
    memory_percent: float | None
    gpu_percent: float | None
    rps: float | None  # None: no gateway report to compute it from
    error_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None

    def value(self, metric: str) -> float | None:
        return {
            "cpu": self.cpu_percent,
            "memory": self.memory_percent,
            "gpu": self.gpu_percent,
            "qps": self.rps,
        }.get(metric)


@dataclass
class PollResult:
    at: object
    seconds: float
    instances: int
    services: dict[int, ServiceMetrics]
    errors: list[str]


def read_instance(instance: Instance) -> Sample:
    """CPU and memory (% of the instance's limits) and, where it holds GPUs, GPU utilisation."""
    sample = Sample(instance.instance_id, instance.service_id)
    try:
        backend = for_node(instance.node)
        stats = backend.stats(instance.instance_id)
        sample.cpu_percent = stats.cpu_percent
        sample.memory_percent = stats.memory_percent
        if instance.gpus:
            sample.gpu_devices = backend.gpu_devices(instance.instance_id)
            sample.gpu_percent = stats.gpu_percent
            if sample.gpu_percent is None:
                sample.gpu_percent = gpu.utilization(sample.gpu_devices)
    except Exception as exc:  # gone between the query and the read, engine down: not available
        sample.error = f"{instance.instance_id}: {exc}"
    return sample


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def poll(*, store=None, now=None) -> PollResult:
    """Read every running instance and the gateways; store the samples; roll up and expire."""
    started = time.perf_counter()
    now = now or timezone.now()
    instances = list(
        Instance.objects.filter(state=Instance.RUNNING, service__deleted_at__isnull=True)
        .select_related("node")
        .order_by("pk")
    )
    workers = max(1, min(settings.EMS_METRICS_POLL_WORKERS, len(instances)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics") as pool:
        samples = list(pool.map(read_instance, instances))
    if store is None:
        from serving.publish import store as route_store

        store = route_store()
    try:
        seen = traffic.collect(store)
    except Exception as exc:  # the route store is down: traffic not available this pass
        log.warning("cannot read the gateways' reports: %s", exc)
        seen = traffic.TrafficReport()

    by_service: dict[int, list[Sample]] = {}
    for sample in samples:
        by_service.setdefault(sample.service_pk, []).append(sample)
    wanted = set(Service.objects.live().filter(desired=Service.RUN).values_list("pk", "service_id"))
    ids = dict(wanted)
    ids.update(
        Service.objects.filter(pk__in=set(by_service) - set(ids)).values_list("pk", "service_id")
    )
    points, results = [], {}
    for sample in samples:
        t = seen.instances.get(sample.instance_id) if seen.seen else None
        points.append(
            MetricPoint(
                service_id=sample.service_pk,
                instance_id=sample.instance_id,
                resolution=RAW,
                at=now,
                rps=_r(t.rps if t else (0.0 if seen.seen else None), 3),
                error_rate=_r(t.error_rate if t else None, 4),
                p50_ms=_r(t.quantile_ms(0.5) if t else None),
                p99_ms=_r(t.quantile_ms(0.99) if t else None),
                cpu_percent=_r(sample.cpu_percent),
                memory_percent=_r(sample.memory_percent),
                gpu_percent=_r(sample.gpu_percent),
                gpu_devices=",".join(sample.gpu_devices)[:100],
            )
        )
    for pk, service_id in ids.items():
        mine = by_service.get(pk, [])
        t = seen.service(service_id)
        metrics = ServiceMetrics(
            ready=len(mine),
            cpu_percent=_mean(s.cpu_percent for s in mine),
            memory_percent=_mean(s.memory_percent for s in mine),
            gpu_percent=_mean(s.gpu_percent for s in mine),
            rps=t.rps if t else None,
            error_rate=t.error_rate if t else None,
            p50_ms=t.quantile_ms(0.5) if t else None,
            p99_ms=t.quantile_ms(0.99) if t else None,
        )
        results[pk] = metrics
        points.append(
            MetricPoint(
                service_id=pk,
                resolution=RAW,
                at=now,
                replicas=metrics.ready,
                rps=_r(metrics.rps, 3),
                error_rate=_r(metrics.error_rate, 4),
                p50_ms=_r(metrics.p50_ms),
                p99_ms=_r(metrics.p99_ms),
                cpu_percent=_r(metrics.cpu_percent),
                memory_percent=_r(metrics.memory_percent),
                gpu_percent=_r(metrics.gpu_percent),
            )
        )
    MetricPoint.objects.bulk_create(points, batch_size=500)
    series.rollup(now)
    series.expire(now)
    errors = [s.error for s in samples if s.error]
    return PollResult(now, time.perf_counter() - started, len(instances), results, errors)
