"""Request rate, error rate and latency percentiles from the gateways' reports.

Every gateway reports its **cumulative** counters per service (and per instance that answered)
to the route store with its heartbeat (``gateway.app.Stats.counters``: count, by status, a
latency histogram over ``gateway.app.LATENCY_BUCKETS``). A rate needs two reports of the same
gateway: the previous one is kept in Django's cache (Redis in production) under the gateway's
id, so any worker can run the pass. Per gateway the increase between its two reports is taken
(a gateway restart, where the counters went down, counts from zero), then summed across the
gateways; percentiles come from the merged histogram with linear interpolation inside a
bucket, as Prometheus' ``histogram_quantile`` does. Errors are answers with status >= 500
(including the gateway's own 502/503/504); 4xx are the caller's mistakes and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.cache import cache

from gateway.app import LATENCY_BUCKETS

CACHE_PREFIX = "ems:metrics:gw:"
CACHE_SECONDS = 3600
WINDOW = 5.0  # seconds of traffic one rate covers (about one metrics interval)
SPACING = 1.0  # reports kept at least this far apart
KEEP = 20.0  # seconds of reports kept per gateway


@dataclass
class Traffic:
    """Traffic of one service or instance over the interval between two reports."""

    requests: float = 0.0  # requests answered in the interval (summed over gateways)
    errors: float = 0.0
    seconds: float = 0.0  # the longest interval among the gateways that reported it
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def quantile_ms(self, q: float) -> float | None:
        return quantile_ms(self.buckets, q)

    def add(self, now: dict, before: dict | None, seconds: float) -> None:
        before = before or {}
        if now.get("count", 0) < before.get("count", 0):  # that gateway restarted
            before = {}
        self.requests += now.get("count", 0) - before.get("count", 0)
        self.errors += _errors(now) - _errors(before)
        self.seconds = max(self.seconds, seconds)
        old = before.get("buckets") or [0] * len(self.buckets)
        for i, (a, b) in enumerate(zip(now.get("buckets") or [], old, strict=False)):
            if i < len(self.buckets):
                self.buckets[i] += a - b


def _errors(counters: dict) -> int:
    return sum(n for code, n in (counters.get("by_status") or {}).items() if int(code) >= 500)


def quantile_ms(buckets: list[float], q: float) -> float | None:
    """The q-quantile in milliseconds of a (non-cumulative) histogram; None when empty."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    acc = 0.0
    for i, n in enumerate(buckets):
        if n <= 0:
            continue
        if acc + n >= rank:
            lower = LATENCY_BUCKETS[i - 1] if i > 0 else 0.0
            if i >= len(LATENCY_BUCKETS):  # the +Inf bucket: its lower bound is all we know
                return lower * 1000.0
            upper = LATENCY_BUCKETS[i]
            return 1000.0 * (lower + (upper - lower) * (rank - acc) / n)
        acc += n
    return 1000.0 * LATENCY_BUCKETS[-1]


@dataclass
class TrafficReport:
    """Per service and per instance traffic of one pass; ``seen`` is False when no live
    gateway had two reports to compare (rates unknown, not zero)."""

    services: dict[str, Traffic] = field(default_factory=dict)
    instances: dict[str, Traffic] = field(default_factory=dict)
    seen: bool = False

    def service(self, service_id: str) -> Traffic | None:
        if not self.seen:
            return None
        return self.services.get(service_id) or Traffic(seconds=1.0)


def _remember(key: str, at: float, counters: dict) -> list[dict]:
    """Keep this gateway's recent reports (spaced >= SPACING s, newest last, KEEP s of them)."""
    snaps = cache.get(key) or []
    if not snaps or at > snaps[-1]["at"]:
        entry = {"at": at, "counters": counters}
        if len(snaps) >= 2 and at - snaps[-2]["at"] < SPACING:
            snaps[-1] = entry  # keep the list spaced: the newest replaces a too-close one
        else:
            snaps.append(entry)
        snaps = [x for x in snaps if x["at"] >= at - KEEP]
        cache.set(key, snaps, CACHE_SECONDS)
    return snaps


def collect(store) -> TrafficReport:
    """Read every live gateway's report and compare it with one of its earlier reports about
    ``WINDOW`` seconds before (or the oldest kept); aggregate over the gateways.

    The cache keeps each gateway's recent reports, so a pass that comes before the gateway's
    next report still sees the last interval, and a busy gateway (which reports every 50 ms)
    still gives a rate over a few seconds, not a noisy instant."""
    out = TrafficReport()
    for gateway_id, report in store.gateways().items():
        counters = report.get("counters")
        if counters is None:  # a gateway of an older version: no counters
            continue
        snaps = _remember(CACHE_PREFIX + gateway_id, float(report.get("at", 0)), counters)
        if len(snaps) < 2:
            continue
        current = snaps[-1]
        previous = snaps[0]
        for snap in snaps[:-1]:
            if current["at"] - snap["at"] >= WINDOW:
                previous = snap
        seconds = current["at"] - previous["at"]
        if seconds <= 0:
            continue
        out.seen = True
        before_all = previous["counters"]
        for sid, now in current["counters"].items():
            before = before_all.get(sid)
            out.services.setdefault(sid, Traffic()).add(now, before, seconds)
            before_instances = (before or {}).get("instances") or {}
            for iid, inow in (now.get("instances") or {}).items():
                out.instances.setdefault(iid, Traffic()).add(
                    inow, before_instances.get(iid), seconds
                )
    return out
