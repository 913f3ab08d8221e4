"""The client side: an asyncio protocol per connection, parsed by httptools.

Requests are buffered (bounded by the body limit) and answered in order, so pipelined
requests on one connection keep their order. Buffering is what lets the gateway answer 413
before contacting an instance and retry a refused connection safely.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from http import HTTPStatus
from time import monotonic, perf_counter
from urllib.parse import parse_qs

import httptools

from gateway.app import HOP_BY_HOP, RESPONSE_DROP, RETRY_AFTER, Gateway, Response
from gateway.upstream import Upstream, UpstreamConn, UpstreamError

log = logging.getLogger("gateway")
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
JSON = ((b"content-type", b"application/json"),)
METHODS = frozenset({b"GET", b"POST"})


class ClientConn(asyncio.Protocol):
    """One client connection."""

    def __init__(self, gw: Gateway, admin: bool = False) -> None:
        self.gw = gw
        self.admin = admin  # accepted on the admin listener: own endpoints only
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque = deque()
        self.busy = False
        self.keep_alive = True
        self.head_request = False
        self.started = 0.0
        self.sid: str | None = None
        self.svc = None
        self.head = self.tail = b""
        self.tried: Upstream | None = None
        self.up: Upstream | None = None
        self.answered_by: str | None = None  # the instance the request was sent to
        self.conn: UpstreamConn | None = None
        self.connecting: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer = b""
        self.last_seen = 0.0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.too_big = False
        self.host: bytes | None = None
        self.token: bytes | None = None
        self.expect = False

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gw.clients.add(self)
        self.last_seen = monotonic()
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""

    def data_received(self, data: bytes) -> None:
        if self.transport is None:  # answered and closed (413, 400): ignore the rest
            return
        self.last_seen = monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fatal(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self._fatal(400, "malformed HTTP request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.gw.clients.discard(self)
        self.queue.clear()
        self.transport = None
        if self.busy:  # the caller left: give up the upstream side, free the counters
            self.release(abort=True)
            self.busy = False
            self.gw.client_inflight -= 1

    # ---- httptools callbacks ----
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"host":
            self.host = value
        elif name == b"x-auth-token":
            self.token = value
        elif name == b"content-length" and value.isdigit() and int(value) > self.gw.max_body:
            self.too_big = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.too_big and not self.busy and not self.queue:
            self._fatal(413, f"request body over the limit of {self.gw.max_body} bytes")
        elif self.expect and not self.too_big and self.transport is not None:
            # curl sends "Expect: 100-continue" with larger bodies and waits a second for this
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.too_big:
            return
        self.size += len(body)
        if self.size > self.gw.max_body:
            self.too_big = True
            self.body = []
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        p = self.parser
        req = (
            p.get_method(), self.url, self.headers, b"".join(self.body), p.should_keep_alive(),
            self.too_big, self.host, self.token,
        )  # fmt: skip
        if self.busy:
            self.queue.append(req)
        else:
            self.begin(req)

    # ---- answering ----
    def close_if_idle(self, since: float) -> None:
        """Close a keep-alive connection with nothing in flight and nothing read since then."""
        if not self.busy and self.last_seen < since and self.transport is not None:
            self.transport.close()
            self.transport = None

    def _fatal(self, status: int, message: str) -> None:
        if self.transport is not None:
            self.send(status, JSON, json.dumps({"error": message}).encode(), False)

    def send(self, status: int, headers, body: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        out = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
        for name, value in headers:
            out.append(b"%s: %s\r\n" % (name, value))
        out.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        if not self.head_request:  # an answer to HEAD has the length but not the body
            out.append(body)
        self.transport.write(b"".join(out))
        if not keep_alive:
            self.transport.close()
            self.transport = None

    # One exchange at a time per connection, driven by callbacks (no task per request):
    # begin -> attempt -> [connect] -> dispatch -> on_response | on_upstream_error | on_timeout
    # -> reply -> the next pipelined request, if any.

    def begin(self, req: tuple) -> None:
        gw = self.gw
        method, url, headers, body, keep_alive, too_big, host, token = req
        self.busy = True
        self.head_request = method == b"HEAD"
        gw.client_inflight += 1
        self.keep_alive = keep_alive
        self.started = perf_counter()
        self.sid = None
        self.answered_by = None
        path, _, query = url.partition(b"?")
        if path[:3] == b"/-/" or path == b"/metrics" or self.admin:
            if self.admin or not gw.admin_separate:
                self.reply(*self.internal(path, query))
            else:  # the gateway's own endpoints live on the admin listener only
                self.reply(404, JSON, b'{"error": "not found"}')
            return
        try:
            svc, rest = gw.resolve(host, path)
            self.sid = svc.id
            gw.check(svc, token)
            if method not in METHODS:
                raise Response(405, "the TF-Serving REST API takes GET and POST only")
            if too_big:
                raise Response(413, f"request body over the limit of {gw.max_body} bytes")
            if not svc.healthy:
                if svc.wake and gw.waker is not None and gw.waker.hold(self, req):
                    return  # a sleeping service: held until it is up (gateway/wake.py)
                msg = f"service {svc.id} has no healthy instance"
                raise Response(503, msg, ((b"retry-after", RETRY_AFTER),))
        except Response as r:
            self.reply(r.status, (*JSON, *r.headers), r.body)
            return
        self.svc = svc
        self.head = b"%s %s%s%s HTTP/1.1\r\nhost: " % (method, rest, b"?" if query else b"", query)
        self.tail = self.forward_headers(headers, body)
        self.tried = None
        self.timer = gw.loop.call_later(gw.upstream_timeout, self.on_timeout)
        self.attempt()

    def attempt(self) -> None:
        up = self.svc.pick(exclude=self.tried)
        if up is None:
            self.fail(502, f"upstream refused the connection (service {self.svc.id})")
            return
        up.inflight += 1
        self.up = up
        conn = up.take_idle()
        if conn is not None:
            self.dispatch(conn)
        else:
            self.connecting = asyncio.ensure_future(up.connect())
            self.connecting.add_done_callback(self.on_connected)

    def on_connected(self, task: asyncio.Future) -> None:
        if task is not self.connecting:  # the exchange that asked for it ended meanwhile
            if not task.cancelled() and task.exception() is None:
                task.result().abort()
            return
        self.connecting = None
        exc = task.exception()
        if exc is None:
            self.dispatch(task.result())
            return
        up, self.up = self.up, None
        up.inflight -= 1
        if isinstance(exc, UpstreamError) and exc.refused and self.tried is None:
            self.tried = up  # refused before any byte was sent: once more, elsewhere,
            self.svc = self.gw.services.get(self.svc.id, self.svc)  # by the current route
            self.attempt()
        else:
            self.fail(502, f"upstream error: {exc}")

    def dispatch(self, conn: UpstreamConn) -> None:
        self.conn = conn
        self.answered_by = self.up.id
        conn.request(b"%s%s\r\n%s" % (self.head, self.up.host_header, self.tail), self)

    def on_response(self, status: int, headers: list, body: bytes) -> None:
        self.release()
        out = [(n, v) for n, v in headers if n.lower() not in RESPONSE_DROP]
        self.reply(status, out, body)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        self.release()
        self.fail(502, f"upstream error: {exc}")

    def on_timeout(self) -> None:
        self.timer = None
        self.release(abort=True)
        self.fail(504, f"upstream timed out after {self.gw.upstream_timeout:g}s")

    def release(self, abort: bool = False) -> None:
        """End the upstream side of the exchange: timer, connection, in-flight count."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.conn is not None:
            if abort:
                self.conn.abort()
            self.conn = None
        if self.up is not None:
            self.up.inflight -= 1
            self.up = None

    def fail(self, status: int, message: str) -> None:
        self.release()
        self.reply(status, JSON, json.dumps({"error": message}).encode())

    def reply(self, status: int, headers, body: bytes) -> None:
        self.send(status, headers, body, self.keep_alive)
        gw = self.gw
        gw.client_inflight -= 1
        if self.sid is not None:
            gw.observe(self.sid, status, perf_counter() - self.started, self.answered_by)
        self.busy = False
        if self.queue:  # pipelined: next one on the next loop turn, not by recursion
            gw.loop.call_soon(self._next)

    def _next(self) -> None:
        if self.queue and not self.busy and self.transport is not None:
            self.begin(self.queue.popleft())

    def forward_headers(self, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        drop = HOP_BY_HOP
        for name, value in headers:
            if name == b"connection":  # names listed in Connection are hop-by-hop too
                drop = drop | {t.strip().lower() for t in value.split(b",")}
        out = [b"%s: %s\r\n" % (n, v) for n, v in headers if n not in drop]
        out.append(b"x-forwarded-for: %s\r\ncontent-length: %d\r\n\r\n" % (self.peer, len(body)))
        out.append(body)
        return b"".join(out)

    def internal(self, path: bytes, query: bytes) -> tuple[int, tuple, bytes]:
        gw = self.gw
        if path == b"/metrics":
            return 200, ((b"content-type", b"text/plain; version=0.0.4"),), gw.metrics()
        if path == b"/-/healthz":
            ready = gw.synced and gw.reported
            doc = {"status": "ok" if ready else "starting", "generation": gw.generation,
                   "services": len(gw.services)}  # fmt: skip
            return (200 if ready else 503), JSON, json.dumps(doc).encode()
        if path == b"/-/generation":
            doc = {"generation": gw.generation, "gateway_id": gw.gateway_id}
            return 200, JSON, json.dumps(doc).encode()
        if path == b"/-/inflight":
            inflight = gw.inflight()
            wanted = parse_qs(query.decode("latin-1")).get("instance")
            if wanted:
                doc = {"instance": wanted[0], "inflight": inflight.get(wanted[0], 0)}
            else:
                doc = {"inflight": inflight}
            doc["generation"] = gw.generation
            return 200, JSON, json.dumps(doc).encode()
        return 404, JSON, b'{"error": "not found"}'
