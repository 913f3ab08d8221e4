"""The client side: an asyncio protocol per connection, parsed by httptools.

Requests are buffered (bounded by the body limit, kept as the chunks read, never joined) and
answered in order, so pipelined requests on one connection keep their order. Buffering is
what lets the gateway answer 413 before contacting an instance and resend a request that
failed before any answer on another instance. Size limits (414, 431) are checked while
parsing; time limits (408, idle close) by :meth:`ClientConn.check_timeouts` on the tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from hmac import compare_digest
from http import HTTPStatus
from time import monotonic, time
from urllib.parse import parse_qs

import httptools

from gateway.app import RETRY_AFTER, Gateway, Response, Service
from gateway.tokens import matching_hash
from gateway.upstream import HOP_BY_HOP, Upstream, UpstreamConn, UpstreamError

log = logging.getLogger("gateway")
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
JSON = ((b"content-type", b"application/json"),)
METHODS = frozenset({b"GET", b"POST"})
IDLE, HEAD, BODY = 0, 1, 2  # where the parser is in the current request
LINGER = 2.0  # seconds a connection answered before its request was read is drained
MAX_PIPELINE = 16  # pipelined requests queued per connection before it is not read
NO_TOKEN = 401, "missing or wrong token (x-Auth-Token)"
QUEUE_FULL, WRITES_BLOCKED = 1, 2  # why reading is paused


def render(headers) -> list[bytes]:
    """(name, value) pairs -> header lines."""
    return [b"%s: %s\r\n" % (name, value) for name, value in headers]


JSON_LINES = render(JSON)


class Limit(Exception):
    """A request over a size limit, raised inside a parser callback."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientConn(asyncio.Protocol):
    """One client connection."""

    def __init__(self, gw: Gateway, admin: bool = False) -> None:
        self.gw = gw
        self.admin = admin  # accepted on the admin listener: own endpoints only
        self.max_header = gw.max_header
        self.head_cap = gw.max_url + gw.max_header + 8192  # bytes read in a head, at most
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
        self.payload: list[bytes] = []
        self.size_out = 0
        self.tried: list[Upstream] = []
        self.resent = False
        self.error: UpstreamError | None = None
        self.up: Upstream | None = None
        self.answered_by: str | None = None  # the instance the request was sent to
        self.conn: UpstreamConn | None = None
        self.sent_at = 0.0
        self.connecting: asyncio.Future | None = None
        self.deadline = 0.0  # monotonic: 504 after this (checked on the tick), 0 = none
        # per connection, for the requests that follow on it (keep-alive): the last route
        # resolved (valid while the route table is the same object) and the last token that
        # matched (valid for the same Service object: a republished route is a new one)
        self.rt_table: dict | None = None
        self.rt_key: tuple = ()
        self.rt_hit: tuple = ()
        self.tok_svc: Service | None = None
        self.tok_raw = b""
        self.tok_hash = ""
        self.peer = b""
        self.last_seen = 0.0
        self.phase = IDLE
        self.phase_since = 0.0
        self.raw_head = 0  # bytes read while in a request head (bounds httptools' buffering)
        self.limit: Limit | None = None
        self.paused = 0  # QUEUE_FULL | WRITES_BLOCKED: reading is paused
        self.rejected = False  # the parser refused a request: nothing more is parsed
        self.answered = False  # some request on this connection was answered
        self.queued = 0  # body bytes of the pipelined requests waiting in the queue
        self.linger: asyncio.Transport | None = None  # answered early: reading the rest
        self.linger_until = 0.0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[bytes] = []  # the lines to forward, "name: value\r\n"
        self.conn_names = b""  # the value(s) of Connection: more headers not to forward
        self.body: list[bytes] = []
        self.size = 0
        self.head_size = 0
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
        if self.transport is None or self.rejected:  # answered (413, 400 …): drop the rest
            return
        self.last_seen = monotonic()
        if self.phase != BODY:
            self.raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserCallbackError:
            if self.limit is None:
                raise
            self._reject(self.limit.status, str(self.limit))
            return
        except httptools.HttpParserError:
            self._reject(400, "malformed HTTP request")
            return
        if self.phase != BODY and self.raw_head > self.head_cap:
            # one header line still being read is buffered by httptools: stop it here
            self._reject(431, f"request headers over the limit of {self.max_header} bytes")

    def _reject(self, status: int, message: str) -> None:
        """A request the parser refused: answered after the answers still due on this
        connection (pipelined), then the connection is closed; nothing more is parsed."""
        self.rejected = True
        if self.busy or self.queue:
            self.queue.append((None, status, message))
            self._pause(QUEUE_FULL)
        else:
            self._fatal(status, message)

    def eof_received(self) -> bool | None:
        if self.linger is not None:  # the client sent all it had: close now
            self.linger.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.linger = None
        self.gw.clients.discard(self)
        self.queue.clear()
        self.body, self.payload = [], []  # the parser refers back to us: free bodies now
        self.transport = None
        if self.busy:  # the caller left: give up the upstream side, free the counters
            self.release(abort=True)
            self.busy = False
            self.gw.client_inflight -= 1

    # ---- httptools callbacks ----
    def on_message_begin(self) -> None:
        self._reset()
        self.phase, self.phase_since = HEAD, self.last_seen  # set by data_received: now

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.gw.max_url:
            self.limit = Limit(414, f"URL over the limit of {self.gw.max_url} bytes")
            raise self.limit

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self.head_size = self.head_size + len(name) + len(value) + 4
        if size > self.max_header:
            self.limit = Limit(431, f"request headers over the limit of {self.max_header} bytes")
            raise self.limit
        name = name.lower()
        if name not in HOP_BY_HOP:  # rendered once, here: forward_headers only joins them
            self.headers.append(b"%s: %s\r\n" % (name, value))
        elif name == b"host":
            self.host = value
        elif name == b"x-auth-token":
            self.token = value
        elif name == b"content-length":
            if value.isdigit() and int(value) > self.gw.max_body:
                self.too_big = True
        elif name == b"expect":
            self.expect = value.lower() == b"100-continue"
        elif name == b"connection":
            self.conn_names += b"," + value

    def on_headers_complete(self) -> None:
        self.phase, self.phase_since, self.raw_head = BODY, self.last_seen, 0
        if self.too_big and not self.busy and not self.queue:
            self._refuse_early()
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
        self.phase = IDLE
        p = self.parser
        if self.size >= self.gw.trim_after:
            self.gw.big_bytes += self.size
        req = (
            p.get_method(), self.url, self.headers, self.body, self.size, p.should_keep_alive(),
            self.too_big, self.host, self.token, self.conn_names,
        )  # fmt: skip
        self.body = []  # the request holds it now; an idle connection pins no body
        if self.busy:
            self.queue.append(req)
            self.queued += self.size
            if len(self.queue) >= MAX_PIPELINE or self.queued >= self.gw.max_body:
                self._pause(QUEUE_FULL)  # read no more until answers make room
        else:
            self.begin(req)

    # ---- back-pressure: a client that sends faster than it reads answers is not read ----
    def pause_writing(self) -> None:  # the transport's buffer of answers is full
        self._pause(WRITES_BLOCKED)

    def resume_writing(self) -> None:
        self._resume(WRITES_BLOCKED)

    def _pause(self, why: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= why

    def _resume(self, why: int) -> None:
        was, self.paused = self.paused, self.paused & ~why
        if was and not self.paused and self.transport is not None:
            self.transport.resume_reading()
            self.phase_since = monotonic()  # time limits count from reading again

    # ---- time limits (called on the gateway's tick) ----
    def check_timeouts(self, now: float) -> None:
        """408 for a request whose head or body arrives too slowly; close idle keep-alives."""
        if self.linger is not None and now >= self.linger_until:
            self.linger.close()
            self.linger = None
        if self.deadline and now >= self.deadline and self.busy:
            self.on_timeout()  # on the tick, not a timer per request: 504 up to TICK late
        if self.transport is None or self.paused:  # paused by us: not the client's delay
            return
        gw = self.gw
        if self.phase == HEAD and now - self.phase_since > gw.header_timeout:
            self._timeout(f"request head not received within {gw.header_timeout:g}s")
        elif self.phase == BODY and now - self.phase_since > gw.body_timeout:
            self._timeout(f"request body not received within {gw.body_timeout:g}s")
        elif self.phase == IDLE and not self.busy and not self.queue:
            if gw.draining:
                idle_limit = gw.drain_idle
            elif self.answered:
                idle_limit = gw.keepalive_timeout
            else:  # connected and silent: a client gets the head timeout to start, not 75 s
                idle_limit = gw.header_timeout
            if now - self.last_seen > idle_limit:
                self.transport.close()
                self.transport = None

    def _timeout(self, message: str) -> None:
        if self.busy:  # an answer is still due on this connection: no 408 out of order
            self.transport.close()  # type: ignore[union-attr]
            self.transport = None
        else:
            self._fatal(408, message)

    # ---- answering ----
    def close_if_idle(self, since: float) -> None:
        """Close a keep-alive connection with nothing in flight and nothing read since then."""
        if not self.busy and self.last_seen < since and self.transport is not None:
            self.transport.close()
            self.transport = None

    def _refuse_early(self) -> None:
        """A declared body over the limit is refused before it is read, but in the order of
        ``begin``: an unknown service (404) and a missing or wrong token (401) come before 413,
        so only a caller allowed to send learns the limit."""
        try:
            if self.admin or self.url.partition(b"?")[0][:3] == b"/-/":
                raise Response(404, "not found")
            svc, _ = self.gw.resolve(self.host, self.url.partition(b"?")[0])
            self.gw.check(svc, self.token)
        except Response as r:  # answered and closed like _fatal: the unread body lingers
            unread, self.phase = self.phase != IDLE, IDLE
            self.send(r.status, render((*JSON, *r.headers)), [r.body], False, unread)
            return
        self._fatal(413, f"request body over the limit of {self.gw.max_body} bytes")

    def _fatal(self, status: int, message: str) -> None:
        """Answer and close. A request not read to its end is read on (and dropped) for up
        to LINGER seconds after our half-close, so the client can read the answer: closing
        with unread input would reset the connection and lose it."""
        unread, self.phase = self.phase != IDLE, IDLE
        self.send(status, JSON_LINES, [json.dumps({"error": message}).encode()], False, unread)

    def send(
        self, status: int, lines: list[bytes], body: list[bytes], keep_alive: bool,
        linger: bool = False,
    ) -> None:  # fmt: skip
        """Write an answer: ``lines`` are its header lines (``b"name: value\\r\\n"``), the
        head and a small body go out in one write."""
        if self.transport is None:
            return
        keep_alive = keep_alive and not self.gw.draining
        head = b"HTTP/1.1 %d %s\r\n%scontent-length: %d\r\n%s\r\n" % (
            status, REASONS.get(status, b"Unknown"), b"".join(lines), sum(map(len, body)),
            b"" if keep_alive else b"connection: close\r\n",
        )  # fmt: skip
        if self.head_request:  # an answer to HEAD has the length but not the body
            self.transport.write(head)
        elif len(body) == 1 and len(body[0]) < 65536:
            self.transport.write(head + body[0])
        else:  # large: the chunks as they came, never copied into one buffer
            self.transport.writelines([head, *body])
        if not keep_alive:
            if linger and self.transport.can_write_eof():
                self.transport.write_eof()
                self.linger, self.linger_until = self.transport, monotonic() + LINGER
            else:
                self.transport.close()
            self.transport = None

    # One exchange at a time per connection, driven by callbacks (no task per request):
    # begin -> attempt -> [connect] -> dispatch -> on_response | on_upstream_error | on_timeout
    # -> reply -> the next pipelined request, if any. A failure before any answer byte goes
    # back to attempt (another instance) through retry().

    def begin(self, req: tuple) -> None:
        gw = self.gw
        method, url, headers, body, size, keep_alive, too_big, host, token, conn_names = req
        self.busy = True
        self.head_request = method == b"HEAD"
        gw.client_inflight += 1
        self.keep_alive = keep_alive
        self.started = monotonic()
        self.sid = None
        self.answered_by = None
        path, _, query = url.partition(b"?")
        if path[:3] == b"/-/" or path == b"/metrics" or self.admin:
            if self.admin:
                self.reply(*self.internal(path, query))
            else:  # the gateway's own endpoints live on the admin listener only
                self.reply(404, JSON, b'{"error": "not found"}')
            return
        try:
            if gw.services is self.rt_table and self.rt_key == (path, host):
                svc, rest = self.rt_hit  # the same route as this connection's last request
            else:
                svc, rest = self.rt_hit = gw.resolve(host, path)
                self.rt_table, self.rt_key = gw.services, (path, host)
            self.sid = svc.id
            if svc.refuse:  # e.g. the tenant is suspended: say so, proxy nothing
                raise Response(403, svc.refuse)
            if svc.auth and not self.token_ok(svc, token):
                raise Response(*NO_TOKEN)
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
        self.tail = self.forward_headers(headers, conn_names, size)
        self.payload, self.size_out = body, size
        self.tried, self.resent, self.error = [], False, None
        self.deadline = self.started + gw.upstream_timeout
        self.attempt()

    def token_ok(self, svc: Service, token: bytes | None) -> bool:
        """``gateway.tokens.check_token``, with the SHA-256 skipped for a token that already
        matched this route on this connection (compared with ``hmac.compare_digest``)."""
        if token and svc is self.tok_svc and compare_digest(token, self.tok_raw):
            matched = self.tok_hash
        else:
            matched = matching_hash(token, svc.tokens)
            if matched is None:
                return False
            self.tok_svc, self.tok_raw, self.tok_hash = svc, token, matched
        expiry = svc.not_after.get(matched) if svc.not_after else None
        return expiry is None or time() < expiry

    def attempt(self) -> None:
        up = self.svc.pick(self.tried)
        if up is None:
            if self.error is not None:
                self.fail(502, f"upstream error: {self.error}")
            else:
                msg = f"no instance of service {self.svc.id} is answering"
                self.fail(503, msg, ((b"retry-after", RETRY_AFTER),))
            return
        self.tried.append(up)
        up.inflight += 1
        self.up = up
        conn = up.take_idle()
        if conn is not None:
            self.dispatch(conn)
        else:
            self.connecting = asyncio.ensure_future(up.connect(self.gw.probe_timeout))
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
        elif isinstance(exc, UpstreamError):
            self.retry(exc)
        else:  # not expected: answer now rather than wait for the timeout
            self.retry(UpstreamError(f"cannot connect to instance {self.up.id}: {exc}", sent=False))

    def dispatch(self, conn: UpstreamConn) -> None:
        self.conn = conn
        up = self.up
        self.answered_by = up.id
        parts = [self.head, up.host_header, self.tail, *self.payload]
        if len(self.payload) <= 1 and self.size_out < 65536:  # small: one buffer, one send
            parts = b"".join(parts)
        if conn.request(parts, self):
            self.sent_at = monotonic()
            up.waiting.add(self)
        else:  # closed before anything was written: never reached the instance
            msg = f"instance {up.id} closed the connection before the request was written"
            self.retry(UpstreamError(msg, sent=False))

    def on_response(self, status: int, lines: list[bytes], body: list[bytes]) -> None:
        self.release()
        self.finish(status, lines, body)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        self.retry(exc)

    def on_stalled(self, up: Upstream) -> None:
        """The instance holding this request failed a health probe (frozen, hung)."""
        if self.up is up and self.conn is not None and not self.conn.answered:
            self.retry(UpstreamError(f"instance {up.id} stopped answering (health probe failed)"))

    def retry(self, exc: UpstreamError) -> None:
        """Another instance for a request that got no answer byte; else 502 (see the docs)."""
        up, conn = self.up, self.conn
        fresh = conn is None or conn.fresh
        self.drop_upstream(abort=True)
        if up is not None and not exc.answered and (not exc.sent or fresh):
            up.eject(str(exc))  # refused, or a new connection died: not a stale keep-alive
        self.error = exc
        if exc.answered or (exc.sent and self.resent):
            self.fail(502, f"upstream error: {exc}")
            return
        self.resent = self.resent or exc.sent  # a request that reached one is resent once
        self.gw.retries += 1
        self.svc = self.gw.services.get(self.svc.id, self.svc)  # by the current route
        self.attempt()

    def on_timeout(self) -> None:
        self.deadline = 0.0
        if self.up is not None:
            self.up.eject(f"no answer within {self.gw.upstream_timeout:g}s")
        self.release(abort=True)
        self.fail(504, f"upstream timed out after {self.gw.upstream_timeout:g}s")

    def drop_upstream(self, abort: bool = False) -> None:
        """End the upstream side of one attempt: connection, in-flight count."""
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.conn is not None:
            if abort:
                self.conn.abort()
            self.conn = None
        if self.up is not None:
            self.up.inflight -= 1
            self.up.waiting.discard(self)
            self.up = None

    def release(self, abort: bool = False) -> None:
        """End the upstream side of the exchange: timer, connection, in-flight count."""
        self.deadline = 0.0
        self.drop_upstream(abort)

    def fail(self, status: int, message: str, headers: tuple = ()) -> None:
        self.release()
        self.reply(status, (*JSON, *headers), json.dumps({"error": message}).encode())

    def reply(self, status: int, headers, body) -> None:
        """Answer the current request: ``headers`` as (name, value) pairs."""
        self.finish(status, render(headers), body)

    def finish(self, status: int, lines: list[bytes], body) -> None:
        self.payload = []
        self.send(status, lines, [body] if body.__class__ is bytes else body, self.keep_alive)
        gw = self.gw
        gw.client_inflight -= 1
        now = monotonic()
        if self.sid is not None:
            gw.observe(self.sid, status, now - self.started, self.answered_by)
        self.busy = False
        self.answered = True
        self.last_seen = now  # idle from the answer on, not from the request
        if self.queue:  # pipelined: next one on the next loop turn, not by recursion
            gw.loop.call_soon(self._next)

    def _next(self) -> None:
        if self.queue and not self.busy and self.transport is not None:
            req = self.queue.popleft()
            if req[0] is None:  # a rejected request (see _reject): its answer, then close
                self.phase = HEAD  # the rest of it is unread: linger
                self._resume(QUEUE_FULL)
                self._fatal(req[1], req[2])
                return
            self.queued -= req[4]
            if self.paused & QUEUE_FULL and len(self.queue) < MAX_PIPELINE // 2:
                self._resume(QUEUE_FULL)
            self.begin(req)

    def forward_headers(self, lines: list[bytes], conn_names: bytes, size: int) -> bytes:
        """Everything after the Host value up to the body (``\\r\\n`` ends the Host line).
        ``lines`` are the request's headers less HOP_BY_HOP, rendered by ``on_header``."""
        if conn_names:  # the headers that Connection names are hop-by-hop too
            drop = {t.strip().lower() for t in conn_names.split(b",")}
            lines = [line for line in lines if line.partition(b":")[0] not in drop]
        return b"\r\n%sx-forwarded-for: %s\r\ncontent-length: %d\r\n\r\n" % (
            b"".join(lines),
            self.peer,
            size,
        )

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
        if path == b"/-/upstreams":
            return 200, JSON, json.dumps({"upstreams": gw.upstream_states()}).encode()
        return 404, JSON, b'{"error": "not found"}'
