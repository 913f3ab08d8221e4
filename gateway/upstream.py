"""A lean pooled HTTP/1.1 client for the runtime instances (asyncio protocol + httptools).

Each :class:`Upstream` is one instance (id + URL) with its own keep-alive pool and an
in-flight counter; the gateway keeps the same object across route changes, so the pool and
the counter survive a republish and a removed instance can be watched until it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import httptools

MAX_IDLE = 64  # idle keep-alive connections kept per instance
IDLE_SECONDS = 30.0  # and for this long at most


class UpstreamError(Exception):
    """The upstream failed; ``refused`` means it never accepted the connection (safe to retry)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class UpstreamConn(asyncio.Protocol):
    """One keep-alive connection. ``request(data, waiter)`` sends bytes; the parsed response
    goes to ``waiter.on_response(status, headers, body)``, a failure to
    ``waiter.on_upstream_error(exc)``. Callbacks, not futures: this is the hot path."""

    __slots__ = (
        "body", "closed", "headers", "idle_since", "parser", "pool", "status", "transport",
        "waiter",
    )  # fmt: skip

    def __init__(self, pool: Upstream) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes, waiter) -> None:
        self.waiter = waiter
        self.status, self.headers, self.body = 0, [], []
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad response from upstream: {exc}"))
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        if self.parser.should_keep_alive() and not self.closed:
            self.pool.release(self)
        else:
            self.transport.close()  # type: ignore[union-attr]
        if waiter is not None:
            waiter.on_response(self.status, self.headers, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        self._fail(UpstreamError("upstream closed the connection before answering"))

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

    __slots__ = ("down_until", "host", "host_header", "id", "idle", "inflight", "port", "url")

    def __init__(self, instance_id: str, url: str) -> None:
        parts = urlsplit(url)
        self.id = instance_id
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode()
        self.idle: list[UpstreamConn] = []
        self.inflight = 0
        self.down_until = 0.0  # refused recently: others are preferred until then

    def take_idle(self) -> UpstreamConn | None:
        """A pooled keep-alive connection, or None when a new one must be opened."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
        return None

    async def connect(self) -> UpstreamConn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: UpstreamConn(self), self.host, self.port)
        except ConnectionRefusedError as exc:
            self.down_until = time.monotonic() + 1.0
            raise UpstreamError(f"instance {self.id} refused the connection", True) from exc
        except OSError as exc:
            self.down_until = time.monotonic() + 1.0
            raise UpstreamError(f"cannot connect to instance {self.id}: {exc}", True) from exc
        return conn

    def release(self, conn: UpstreamConn) -> None:
        if len(self.idle) < MAX_IDLE:
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
