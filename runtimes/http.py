"""The runtime server's HTTP/1.1 layer: one asyncio protocol per connection, parsed by httptools.

No web framework: the request path is parse (httptools) -> :meth:`RuntimeApp.dispatch` -> one
``transport.write`` of the answer, driven by callbacks (no task or coroutine per request), the
way the gateway (``gateway/protocol.py``) reaches its per-request cost. Requests on one
connection are answered in order (pipelining keeps its order). Limits: the URL (414), the
headers (431) and the body (413, checked against Content-Length before the body is read).
Keep-alive connections idle for :data:`KEEPALIVE_SECONDS` are closed; while draining, idle
connections are closed at once and busy ones after their answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from time import monotonic
from typing import TYPE_CHECKING, Any

import httptools
import orjson

if TYPE_CHECKING:
    from runtimes.app import RuntimeApp

log = logging.getLogger("runtimes.server")

REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
MAX_BODY = 64 * 1024 * 1024  # the largest request body (a batch of images fits)
MAX_URL = 8 * 1024
MAX_HEADERS = 64 * 1024
MAX_PIPELINE = 16  # pipelined requests queued per connection before it is not read
KEEPALIVE_SECONDS = 75.0  # longer than the gateway keeps an idle upstream connection (30 s)
JSON = b"application/json"


class _Limit(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpConn(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "app",
        "body",
        "busy",
        "closing",
        "expect",
        "headers_size",
        "keep_alive",
        "last_seen",
        "limit",
        "parser",
        "paused",
        "queue",
        "size",
        "too_big",
        "transport",
        "url",
    )  # fmt: skip

    def __init__(self, app: RuntimeApp) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False  # a request of this connection is being answered
        self.queue: deque = deque()  # pipelined requests waiting for it
        self.keep_alive = True
        self.last_seen = monotonic()
        self.closing = False  # answer the current request, then close
        self.limit: _Limit | None = None
        self.paused = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers_size = 0
        self.body: list[bytes] = []
        self.size = 0
        self.expect = False
        self.too_big = False

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        self.transport = None
        self.queue.clear()
        self.body = []

    def pause_writing(self) -> None:  # a client that does not read its answers
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return self.busy  # keep the write side open for the answer still due

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.closing:
            return
        self.last_seen = monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            limit = self.limit or _Limit(400, "malformed HTTP request")
            self.fatal(limit.status, str(limit))
        except httptools.HttpParserUpgrade:
            self.fatal(400, "protocol upgrades are not supported")
        except httptools.HttpParserError:
            self.fatal(400, "malformed HTTP request")

    # ---- httptools callbacks ----
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:
            self.limit = _Limit(414, f"URL over the limit of {MAX_URL} bytes")
            raise self.limit

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers_size += len(name) + len(value) + 4
        if self.headers_size > MAX_HEADERS:
            self.limit = _Limit(431, f"request headers over the limit of {MAX_HEADERS} bytes")
            raise self.limit
        name = name.lower()
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
            self.too_big = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self) -> None:
        if self.too_big:  # refused before the body is read; the connection closes after
            self.limit = _Limit(413, f"request body over the limit of {MAX_BODY} bytes")
            raise self.limit
        if self.expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            self.body = []
            self.limit = _Limit(413, f"request body over the limit of {MAX_BODY} bytes")
            raise self.limit
        self.body.append(body)

    def on_message_complete(self) -> None:
        p = self.parser
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        req = (p.get_method(), self.url, body, p.should_keep_alive())
        self.body = []
        if self.busy:
            self.queue.append(req)
            if len(self.queue) >= MAX_PIPELINE and self.transport is not None:
                self.transport.pause_reading()  # read no more until answers make room
        else:
            self._begin(req)

    # ---- answering ----
    def _begin(self, req: tuple[bytes, bytes, bytes, bool]) -> None:
        method, url, body, keep_alive = req
        self.busy = True
        self.keep_alive = keep_alive
        self.app.dispatch(self, method, url.partition(b"?")[0], body)

    def respond(self, status: int, body: bytes, content_type: bytes = JSON) -> None:
        """Write one answer; then the next pipelined request, or close if asked to."""
        transport = self.transport
        self.busy = False
        if transport is None:  # the client went away meanwhile
            return
        keep_alive = self.keep_alive and not self.closing and not self.app.draining
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n" % (
            status,
            REASONS.get(status, b"Unknown"),
            content_type,
            len(body),
            b"" if keep_alive else b"connection: close\r\n",
        )
        if len(body) < 65536:
            transport.write(head + body)
        else:
            transport.writelines((head, body))
        self.last_seen = monotonic()
        if not keep_alive:
            transport.close()
            self.transport = None
            return
        if self.queue:
            if len(self.queue) == MAX_PIPELINE:
                transport.resume_reading()
            self._begin(self.queue.popleft())

    def fatal(self, status: int, message: str) -> None:
        """A request the parser refused: answered (after the answers still due), then closed."""
        self.closing = True
        if self.busy:  # answer in order: the refused request's answer would jump the queue
            return
        self.keep_alive = False
        self.busy = True
        self.respond(status, orjson.dumps({"error": message}))

    def close_if_idle(self, idle_since: float) -> None:
        if not self.busy and self.transport is not None and self.last_seen < idle_since:
            self.transport.close()
            self.transport = None
