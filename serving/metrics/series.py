"""Down-sampling, retention and the series the API and the service page show.

* **Raw** samples (one per pass, ``EMS_METRICS_INTERVAL`` apart) are kept
  ``EMS_METRICS_RAW_RETENTION`` seconds (1 h): the ``1h`` window.
* Every finished minute is **rolled up** into one row per series (the mean of each value over
  the minute's samples; p99 as the mean of the per-sample p99s — an approximation, stated on
  the page) kept ``EMS_METRICS_MINUTE_RETENTION`` seconds (30 days): the ``24h`` window.
* Both are deleted past their retention on every pass, so the table never grows without bound:
  at most ``retention / interval`` raw rows and ``retention / 60`` minute rows per series.

The roll-up is idempotent (the minute rows of the range are replaced) and guarded by a cache
lock, so two workers running a pass at once do not write a minute twice.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from serving.metrics.models import MINUTE, RAW, MetricPoint

FIELDS = (
    "replicas",
    "rps",
    "error_rate",
    "p50_ms",
    "p99_ms",
    "cpu_percent",
    "memory_percent",
    "gpu_percent",
)
WINDOWS = {"1h": 3600, "24h": 86400}
MARK = "ems:metrics:rolled-until"
LOCK = "ems:metrics:rollup-lock"
EVENT_KINDS = (
    "scaled",
    "autoscaled",
    "capped",
    "crashed",
    "replaced",
    "healthy",
    "unhealthy",
    "status",
    "woken",
    "sleeping",
)


def _minute(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


def rollup(now: dt.datetime | None = None) -> int:
    """Roll every finished minute since the last roll-up into per-minute rows."""
    now = now or timezone.now()
    end = _minute(now)
    if not cache.add(LOCK, 1, 60):
        return 0
    try:
        mark = cache.get(MARK)
        oldest = end - dt.timedelta(seconds=settings.EMS_METRICS_RAW_RETENTION)
        start = max(dt.datetime.fromtimestamp(mark, dt.UTC), oldest) if mark else oldest
        if start >= end:
            return 0
        rows = MetricPoint.objects.filter(resolution=RAW, at__gte=start, at__lt=end).values_list(
            "service_id", "instance_id", "at", "gpu_devices", *FIELDS
        )
        groups: dict[tuple, list] = {}
        for row in rows.iterator(chunk_size=2000):
            key = (row[0], row[1], _minute(row[2]))
            groups.setdefault(key, []).append(row)
        out = []
        for (service_id, instance_id, minute), items in groups.items():
            values = {}
            for index, name in enumerate(FIELDS, start=4):
                present = [r[index] for r in items if r[index] is not None]
                values[name] = round(sum(present) / len(present), 3) if present else None
            out.append(
                MetricPoint(
                    service_id=service_id,
                    instance_id=instance_id,
                    resolution=MINUTE,
                    at=minute,
                    gpu_devices=items[-1][3],
                    **values,
                )
            )
        with transaction.atomic():
            MetricPoint.objects.filter(resolution=MINUTE, at__gte=start, at__lt=end).delete()
            MetricPoint.objects.bulk_create(out, batch_size=1000)
        cache.set(MARK, end.timestamp(), None)
        return len(out)
    finally:
        cache.delete(LOCK)


def expire(now: dt.datetime | None = None) -> int:
    """Delete samples past their retention; returns how many."""
    now = now or timezone.now()
    raw_cut = now - dt.timedelta(seconds=settings.EMS_METRICS_RAW_RETENTION)
    minute_cut = now - dt.timedelta(seconds=settings.EMS_METRICS_MINUTE_RETENTION)
    raw, _ = MetricPoint.objects.filter(resolution=RAW, at__lt=raw_cut).delete()
    old, _ = MetricPoint.objects.filter(resolution=MINUTE, at__lt=minute_cut).delete()
    return raw + old


def window_seconds(window: str) -> int:
    if window not in WINDOWS:
        from django.core.exceptions import ValidationError

        raise ValidationError({"window": f"The window is one of {', '.join(WINDOWS)}."})
    return WINDOWS[window]


def service_series(service, window: str = "1h", *, now: dt.datetime | None = None) -> dict:
    """``{"series": {name: [[unix time, value], ...]}, "events": [...]}`` of one service:
    raw samples for ``1h``; per-minute rows for ``24h`` (and the raw samples of the minute
    not rolled up yet). A value that is not available has no point (GPU without GPUs)."""
    now = now or timezone.now()
    since = now - dt.timedelta(seconds=window_seconds(window))
    base = MetricPoint.objects.filter(service=service, instance_id="", at__gte=since)
    if window == "1h":
        rows = list(base.filter(resolution=RAW).order_by("at").values_list("at", *FIELDS))
    else:
        rows = list(base.filter(resolution=MINUTE).order_by("at").values_list("at", *FIELDS))
        last = rows[-1][0] + dt.timedelta(minutes=1) if rows else since
        rows += list(
            base.filter(resolution=RAW, at__gte=last).order_by("at").values_list("at", *FIELDS)
        )
    series: dict[str, list] = {name: [] for name in FIELDS}
    for row in rows:
        stamp = round(row[0].timestamp(), 3)
        for index, name in enumerate(FIELDS, start=1):
            if row[index] is not None:
                series[name].append([stamp, row[index]])
    events = [
        {
            "at": round(e.created_at.timestamp(), 3),
            "kind": e.kind,
            "level": e.level,
            "message": e.message[:300],
        }
        for e in service.events.filter(created_at__gte=since, kind__in=EVENT_KINDS).order_by(
            "created_at", "id"
        )[:500]
    ]
    return {"series": series, "events": events}
