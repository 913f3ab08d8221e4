"""The gateway's state: the applied route table, balancing, forwarding and its counters."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from gateway.tokens import check_token
from gateway.upstream import IDLE_SECONDS, Upstream

log = logging.getLogger("gateway")
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
)  # fmt: skip
RETRY_AFTER = b"1"
HIST = "ems_gateway_request_duration_seconds"


class Response(Exception):
    """A response the gateway answers itself: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: tuple = ()) -> None:
        super().__init__(message)
        self.status = status
        self.body = json.dumps({"error": message}).encode()
        self.headers = headers


class Service:
    """One applied route, compiled for the hot path."""

    __slots__ = (
        "auth", "generation", "healthy", "id", "instances", "not_after", "refuse", "rr",
        "tokens", "wake",
    )  # fmt: skip

    def __init__(self, route: dict[str, Any], upstreams: dict[tuple[str, str], Upstream]) -> None:
        self.id = route["service_id"]
        self.generation = int(route.get("generation", 0))
        self.auth = bool(route.get("auth"))
        self.tokens = tuple(route.get("token_sha256", ()))
        self.not_after = dict(route.get("token_not_after") or {})
        self.refuse = route.get("refuse") or ""  # set: every call gets 403 with this message
        self.wake = bool(route.get("wake"))  # scale to zero: hold requests and wake it
        self.instances: list[Upstream] = []
        self.healthy: list[Upstream] = []
        self.rr = 0
        for inst in route.get("instances", ()):
            key = (inst["id"], inst["url"])
            up = upstreams.get(key)
            if up is None:
                up = upstreams[key] = Upstream(inst["id"], inst["url"])
            self.instances.append(up)
            if inst.get("state") == "healthy":
                self.healthy.append(up)

    def pick(self, tried: list[Upstream] | tuple = ()) -> Upstream | None:
        """Least outstanding requests over the instances neither ejected nor ``tried``;
        ties go round-robin. None when there is none left."""
        healthy = self.healthy
        n = len(healthy)
        if n == 1:
            up = healthy[0]
            return None if up.ejected or up in tried else up
        best = None
        self.rr = start = (self.rr + 1) % n if n else 0
        for i in range(n):
            up = healthy[(start + i) % n]
            if up.ejected or up in tried:
                continue
            if best is None or up.inflight < best.inflight:
                best = up
        return best


class Stats:
    """Requests by status and a latency histogram, for one service (and, in ``instances``, the
    same per instance that answered). Cumulative since the gateway started: the control plane's
    metrics poller turns the reported counters into rates and percentiles."""

    __slots__ = ("buckets", "by_status", "count", "instances", "sum")

    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0
        self.instances: dict[str, Stats] = {}

    def add(self, status: int, seconds: float) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def counters(self) -> dict[str, Any]:
        """The report form: ``{"count", "sum", "by_status": {"200": n}, "buckets": [...]}``
        (``buckets`` per ``LATENCY_BUCKETS`` upper bound, the last one +Inf, not cumulative)."""
        doc: dict[str, Any] = {
            "count": self.count,
            "sum": round(self.sum, 6),
            "by_status": {str(k): v for k, v in list(self.by_status.items())},
            "buckets": list(self.buckets),
        }
        if self.instances:
            doc["instances"] = {i: st.counters() for i, st in list(self.instances.items())}
        return doc


@dataclass(frozen=True)
class Limits:
    """Client-side limits and health-check timing (docs/gateway.md, "Configuration")."""

    max_url: int = 8192  # 414 over it
    max_header: int = 32768  # 431 over it (all header lines together)
    header_timeout: float = 10.0  # 408: the whole request head must arrive within this
    body_timeout: float = 60.0  # 408: the whole body must arrive within this
    keepalive_timeout: float = 75.0  # an idle client connection is closed after this
    drain_idle: float = 0.5  # while draining (SIGTERM), idle connections close after this
    probe_after: float = 1.0  # a request without an answer byte for this long: probe
    probe_timeout: float = 2.0  # an instance that does not answer a probe in time: ejected
    trim_after: int = 1 << 20  # bodies this large are counted for returning memory


class Gateway:
    """Everything the protocol objects share: routes, upstreams, counters, settings."""

    def __init__(
        self,
        *,
        domain: str,
        max_body: int,
        upstream_timeout: float,
        gateway_id: str,
        limits: Limits | None = None,
    ) -> None:
        self.domain_suffix = ("." + domain.strip(".").lower()).encode() if domain else b""
        self.max_body = max_body
        self.upstream_timeout = upstream_timeout
        self.gateway_id = gateway_id
        lim = limits or Limits()
        self.max_url, self.max_header = lim.max_url, lim.max_header
        self.header_timeout, self.body_timeout = lim.header_timeout, lim.body_timeout
        self.keepalive_timeout, self.drain_idle = lim.keepalive_timeout, lim.drain_idle
        self.probe_after, self.probe_timeout = lim.probe_after, lim.probe_timeout
        self.trim_after = lim.trim_after
        self.big_bytes = 0  # bytes of large bodies since memory was last returned
        self.draining = False  # SIGTERM: answers say "connection: close"
        self.retries = 0  # requests sent again to another instance
        self.tasks: set[asyncio.Task] = set()  # probes in flight
        self.services: dict[str, Service] = {}
        self.upstreams: dict[tuple[str, str], Upstream] = {}
        self.generation = 0
        self.synced = False  # the first full route table is applied
        self.reported = False  # ... and reported, so the control plane can see this gateway
        self.changed = threading.Event()  # wakes the reporter thread
        self.stats: dict[str, Stats] = {}
        self.client_inflight = 0
        self.loop: Any = None  # the event loop, set by serve()
        self.clients: set = set()  # open client connections (protocol objects)
        self.waker: Any = None  # gateway.wake.Waker: holds requests to sleeping services

    # ---- routes (called on the event loop by the watcher thread) ----
    def apply(self, changes: dict[str, dict | None], generation: int, full: bool) -> None:
        if full and generation == 0 and not changes and self.services:
            # A store at generation 0 was never written: it lost its data (Redis restarted
            # without persistence, routes.json deleted). Serving nothing would answer 404 for
            # every service until the control plane republishes (its next pass), so keep the
            # table; generation 0 is reported, so waits for the republish stay exact.
            log.warning(
                "the route store is empty at generation 0 (lost its data?): keeping the last "
                "%d routes until the control plane publishes again",
                len(self.services),
            )
            full = False
        services = {} if full else dict(self.services)
        for sid, route in changes.items():
            if route is None:
                services.pop(sid, None)
            else:
                services[sid] = Service(route, self.upstreams)
        self.services = services
        self.generation = (
            generation if full or generation == 0 else max(self.generation, generation)
        )
        self.synced = True
        self.changed.set()
        self.collect()
        if self.waker is not None:
            self.waker.routes_applied()

    def collect(self) -> None:
        """Forget upstreams no route references once their in-flight requests finished, and
        the counters of services and instances that no route names any more (so they stay
        bounded however often services scale)."""
        used = {id(u) for s in self.services.values() for u in s.instances}
        routed = {u.id for s in self.services.values() for u in s.instances}
        for sid, st in list(self.stats.items()):
            if sid not in self.services:
                del self.stats[sid]
                continue
            for iid in [i for i in st.instances if i not in routed]:
                del st.instances[iid]
        idle_since = time.monotonic() - IDLE_SECONDS
        for key, up in list(self.upstreams.items()):
            if id(up) not in used and up.inflight == 0 and not up.probing:
                up.close()
                del self.upstreams[key]
            else:
                up.close_idle(idle_since)

    def tick(self, now: float | None = None) -> None:
        """Periodic work on the loop: slow-client limits, and passive health (probe the
        instances that hold requests without an answer, and the ejected ones when due)."""
        now = time.monotonic() if now is None else now
        for conn in list(self.clients):
            conn.check_timeouts(now)
        for up in list(self.upstreams.values()):
            if up.probing:
                continue
            if up.ejected:
                if now >= up.probe_at:
                    self._spawn(up.run_probe(self.probe_timeout))
            elif up.waiting:
                oldest = min(
                    (c.sent_at for c in up.waiting if c.conn is not None and not c.conn.answered),
                    default=now,
                )
                if now - oldest >= self.probe_after and now - up.checked_at >= self.probe_after:
                    self._spawn(self._check_stalled(up))

    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _check_stalled(self, up: Upstream) -> None:
        """Requests wait on ``up`` without an answer byte: alive but slow, or frozen?"""
        up.probing = True
        try:
            ok = await up.probe(self.probe_timeout)
        finally:
            up.probing = False
        if ok:
            up.checked_at = time.monotonic()
            return
        n = len(up.waiting)
        up.eject(f"no answer to a health probe within {self.probe_timeout:g}s, {n} waiting")
        for conn in list(up.waiting):  # resend them elsewhere (or answer) now, not at timeout
            conn.on_stalled(up)

    def upstream_states(self) -> list[dict[str, Any]]:
        return [
            {
                "id": up.id,
                "url": up.url,
                "inflight": up.inflight,
                "ejected": up.ejected,
                "ejections": up.ejections,
            }
            for up in list(self.upstreams.values())
        ]

    def inflight(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for up in list(self.upstreams.values()):
            if up.inflight:
                out[up.id] = out.get(up.id, 0) + up.inflight
        return out

    # ---- the hot path ----
    def resolve(self, host: bytes | None, path: bytes) -> tuple[Service, bytes]:
        """(service, path to forward) from the Host header or the first path segment."""
        sid = None
        if host and self.domain_suffix:
            name = host.split(b":", 1)[0].lower()
            if name.endswith(self.domain_suffix):
                sid = name[: -len(self.domain_suffix)].decode("ascii", "replace")
                rest = path
        if sid is None:
            first, sep, rest = path[1:].partition(b"/")
            sid = first.decode("ascii", "replace")
            rest = b"/" + rest if sep else b""
        svc = self.services.get(sid)
        if svc is None:
            raise Response(404, f"no service {sid!r} here")
        if not rest.startswith(b"/v1/"):
            raise Response(404, "not found: the gateway serves /v1/models/... of each service")
        return svc, rest

    def observe(self, sid: str, status: int, seconds: float, instance: str | None = None) -> None:
        """Count one answer for the service and the instance (``Stats.add``, inlined: this
        runs once per request)."""
        st = self.stats.get(sid)
        if st is None:
            st = self.stats[sid] = Stats()
        at = bisect_left(LATENCY_BUCKETS, seconds)
        by = st.by_status
        by[status] = by.get(status, 0) + 1
        st.buckets[at] += 1
        st.sum += seconds
        st.count += 1
        if instance is not None:
            st = st.instances.get(instance) or st.instances.setdefault(instance, Stats())
            by = st.by_status
            by[status] = by.get(status, 0) + 1
            st.buckets[at] += 1
            st.sum += seconds
            st.count += 1

    def counters(self) -> dict[str, Any]:
        """Every service's cumulative counters, for the report to the route store."""
        return {sid: st.counters() for sid, st in list(self.stats.items())}

    def check(self, svc: Service, token: bytes | None) -> None:
        if svc.auth and not check_token(token, svc.tokens, svc.not_after):
            raise Response(401, "missing or wrong token (x-Auth-Token)")

    # ---- its own endpoints ----
    def metrics(self) -> bytes:
        lines = [
            "# HELP ems_gateway_requests_total Requests answered, by service and HTTP status.",
            "# TYPE ems_gateway_requests_total counter",
        ]
        for sid, st in sorted(self.stats.items()):
            for status, n in sorted(st.by_status.items()):
                lines.append(f'ems_gateway_requests_total{{service="{sid}",code="{status}"}} {n}')
        lines += [
            "# HELP ems_gateway_request_duration_seconds Time from request to response.",
            "# TYPE ems_gateway_request_duration_seconds histogram",
        ]
        for sid, st in sorted(self.stats.items()):
            acc = 0
            for le, n in zip((*LATENCY_BUCKETS, "+Inf"), st.buckets, strict=True):
                acc += n
                lines.append(f'{HIST}_bucket{{service="{sid}",le="{le}"}} {acc}')
            lines.append(f'{HIST}_sum{{service="{sid}"}} {st.sum}')
            lines.append(f'{HIST}_count{{service="{sid}"}} {st.count}')
        lines += [
            "# HELP ems_gateway_instance_inflight Requests in flight to an instance.",
            "# TYPE ems_gateway_instance_inflight gauge",
        ]
        for up in list(self.upstreams.values()):
            lines.append(f'ems_gateway_instance_inflight{{instance="{up.id}"}} {up.inflight}')
        lines += [
            "# HELP ems_gateway_instance_ejected 1 while passive health keeps an instance out.",
            "# TYPE ems_gateway_instance_ejected gauge",
        ]
        for up in list(self.upstreams.values()):
            lines.append(f'ems_gateway_instance_ejected{{instance="{up.id}"}} {int(up.ejected)}')
        lines += [
            "# HELP ems_gateway_instance_ejections_total Times an instance was ejected.",
            "# TYPE ems_gateway_instance_ejections_total counter",
        ]
        for up in list(self.upstreams.values()):
            lines.append(
                f'ems_gateway_instance_ejections_total{{instance="{up.id}"}} {up.ejections}'
            )
        lines += [
            "# HELP ems_gateway_retries_total Requests sent again to another instance.",
            "# TYPE ems_gateway_retries_total counter",
            f"ems_gateway_retries_total {self.retries}",
        ]
        lines += [
            "# HELP ems_gateway_route_generation Route generation this gateway has applied.",
            "# TYPE ems_gateway_route_generation gauge",
            f"ems_gateway_route_generation {self.generation}",
            "# TYPE ems_gateway_services gauge",
            f"ems_gateway_services {len(self.services)}",
        ]
        if self.waker is not None:
            lines += [
                "# HELP ems_gateway_wake_held Requests held while their service wakes from zero.",
                "# TYPE ems_gateway_wake_held gauge",
                f"ems_gateway_wake_held {self.waker.count()}",
                "# HELP ems_gateway_wake_requests_total Wake requests written to the route store.",
                "# TYPE ems_gateway_wake_requests_total counter",
                f"ems_gateway_wake_requests_total {self.waker.woken}",
            ]
        return ("\n".join(lines) + "\n").encode()
