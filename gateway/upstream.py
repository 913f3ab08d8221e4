"""A lean pooled HTTP/1.1 client for the runtime instances (asyncio protocol + httptools).

Each :class:`Upstream` is one instance (id + URL) with its own keep-alive pool, an in-flight
counter and its passive health (ejection with backoff, re-admitted by a probe); the gateway
keeps the same object across route changes, so the pool, the counter and the health survive a
republish and a removed instance can be watched until it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

import httptools

log = logging.getLogger("gateway")
MAX_IDLE = 64  # idle keep-alive connections kept per instance
IDLE_SECONDS = 30.0  # and for this long at most
EJECT_BASE = 1.0  # first ejection: probe again after this many seconds ...
EJECT_MAX = 10.0  # ... doubling per failed probe up to this
PROBE_PATH = b"/v1/models/"  # answered by the runtime's event loop (a 404), never by the model
# Headers never forwarded either way (RFC 9110 §7.6.1), plus the ones we always rewrite.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"host",
        b"content-length",
        b"x-auth-token",
    }
)
RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}


class UpstreamError(Exception):
    """The upstream failed before answering.

    ``sent``: some of the request may have reached the instance (False: refused, could not
    connect, or the connection closed before the request was written). ``answered``: a byte
    of the response had arrived. Only failures with ``answered`` False are retried (see
    docs/gateway.md, "Balancing, retries and passive health").
    """

    def __init__(self, message: str, *, sent: bool = True, answered: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.answered = answered

    @property
    def refused(self) -> bool:  # kept for callers of the earlier name
        return not self.sent


class UpstreamConn(asyncio.Protocol):
    """One keep-alive connection. ``request(data, waiter)`` sends bytes; the parsed response
    goes to ``waiter.on_response(status, header_lines, body_chunks)`` (``header_lines``: the
    answer's headers less ``RESPONSE_DROP``, each already ``b"name: value\r\n"``), a failure to
    ``waiter.on_upstream_error(exc)``. Callbacks, not futures: this is the hot path."""

    __slots__ = (
        "answered", "body", "closed", "fresh", "headers", "idle_since", "parser", "pool",
        "status", "transport", "waiter",
    )  # fmt: skip

    def __init__(self, pool: Upstream) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = None
        self.status = 0
        self.headers: list[bytes] = []  # "name: value\r\n" lines to pass on
        self.body: list[bytes] = []
        self.closed = False
        self.fresh = True  # no request sent on it yet
        self.answered = False  # a byte of the current response arrived
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes | list[bytes], waiter) -> bool:
        """Send a request (one buffer, or chunks written as they are); False (nothing sent)
        when the connection is already closed."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        self.waiter = waiter
        self.status, self.headers, self.body, self.answered = 0, [], [], False
        try:
            if data.__class__ is bytes:
                transport.write(data)  # small: one buffer, one send
            else:
                transport.writelines(data)  # no join: a large body is never copied again
        except (RuntimeError, OSError):  # closed between the check and the write
            self.waiter = None
            return False
        return True

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad response from upstream: {exc}", answered=True))
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in RESPONSE_DROP:  # rendered once, here: no second pass
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.body = self.body, []
        self.fresh = False
        if self.parser.should_keep_alive() and not self.closed:
            self.pool.release(self)
        else:
            self.transport.close()  # type: ignore[union-attr]
        if waiter is not None:
            waiter.on_response(self.status, self.headers, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.body = []
        self.pool.discard(self)
        why = f" ({exc})" if exc else ""
        self._fail(
            UpstreamError(
                f"instance {self.pool.id} closed the connection before answering{why}",
                answered=self.answered,
            )
        )

    def _fail(self, exc: UpstreamError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.on_upstream_error(exc)

    def abort(self) -> None:
        """Drop the connection without telling the waiter (it gave up: timeout, client gone)."""
        self.waiter = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Upstream:
    """One runtime instance behind the gateway."""

    __slots__ = (
        "backoff", "checked_at", "ejected", "ejections", "host", "host_header", "id", "idle",
        "inflight", "port", "probe_at", "probing", "url", "waiting",
    )  # fmt: skip

    def __init__(self, instance_id: str, url: str) -> None:
        parts = urlsplit(url)
        self.id = instance_id
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode()
        self.idle: list[UpstreamConn] = []
        self.inflight = 0
        self.waiting: set = set()  # exchanges (ClientConn) with a request out on this instance
        self.ejected = False  # passive health: no new requests until a probe succeeds
        self.backoff = 0.0
        self.probe_at = 0.0  # monotonic time of the next probe while ejected
        self.probing = False
        self.checked_at = 0.0  # monotonic time of the last probe it answered
        self.ejections = 0

    # ---- passive health ----
    def eject(self, why: str) -> None:
        """Stop sending new requests here; a probe re-admits it (after 1, 2, 4 … 10 s)."""
        now = time.monotonic()
        if not self.ejected:
            self.ejected = True
            self.ejections += 1
            self.backoff = EJECT_BASE
            log.warning("instance %s (%s) ejected: %s", self.id, self.url, why)
        self.probe_at = max(self.probe_at, now + self.backoff)
        self.close()  # its pooled connections are suspect too

    def admit(self) -> None:
        if self.ejected:
            log.info("instance %s (%s) answers again: re-admitted", self.id, self.url)
        self.ejected = False
        self.backoff = 0.0

    async def probe(self, timeout: float) -> bool:
        """True when the instance answers an HTTP request (any status) within ``timeout``.

        A frozen process still completes TCP handshakes (the kernel does), so only an answer
        counts; the probe path is served by the runtime's event loop, not by the model."""
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(
                    b"GET %s HTTP/1.1\r\nhost: %s\r\nconnection: close\r\n\r\n"
                    % (PROBE_PATH, self.host_header)
                )
                return (await reader.readexactly(7)) == b"HTTP/1."
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            if writer is not None:
                writer.transport.abort()

    async def run_probe(self, timeout: float) -> None:
        """While ejected: probe, re-admit on an answer, else back off (doubling)."""
        self.probing = True
        try:
            if await self.probe(timeout):
                self.admit()
            elif self.ejected:
                self.backoff = min(self.backoff * 2 or EJECT_BASE, EJECT_MAX)
                self.probe_at = time.monotonic() + self.backoff
        finally:
            self.probing = False

    # ---- the pool ----
    def take_idle(self) -> UpstreamConn | None:
        """A pooled keep-alive connection, or None when a new one must be opened."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
        return None

    async def connect(self, timeout: float = 2.0) -> UpstreamConn:
        """A new connection; a host that drops SYNs (down, partitioned) fails after
        ``timeout`` instead of the kernel's two minutes."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConn(self), self.host, self.port
                )
        except TimeoutError as exc:
            msg = f"cannot connect to instance {self.id} within {timeout:g}s"
            raise UpstreamError(msg, sent=False) from exc
        except ConnectionRefusedError as exc:
            raise UpstreamError(f"instance {self.id} refused the connection", sent=False) from exc
        except OSError as exc:
            raise UpstreamError(f"cannot connect to instance {self.id}: {exc}", sent=False) from exc
        return conn

    def release(self, conn: UpstreamConn) -> None:
        if len(self.idle) < MAX_IDLE and not self.ejected:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.transport.close()  # type: ignore[union-attr]

    def discard(self, conn: UpstreamConn) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def close_idle(self, since: float) -> None:
        """Close pooled connections idle since before ``since``: ours go before the instance
        closes them itself (aiohttp: after 75 s), so a reused one is never half-closed."""
        for conn in [c for c in self.idle if c.idle_since < since]:
            self.discard(conn)
            conn.transport.close()  # type: ignore[union-attr]

    def close(self) -> None:
        for conn in self.idle:
            conn.transport.close()  # type: ignore[union-attr]
        self.idle.clear()
