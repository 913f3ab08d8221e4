"""The web process: gunicorn's threaded worker with deadlines for slow clients.

Gunicorn's sync workers serve one connection at a time, so a handful of clients that send a
request one byte at a time (slowloris) hold every worker until its timeout kills it, and
``/healthz`` stops answering. Threaded workers (``gthread``) wait for idle and keep-alive
connections in a poller without a thread, but a thread reading a dribbled request head still
waits as long as the client likes. This worker adds three bounds:

- a connection must send its first byte within ``EMS_WEB_HEADER_TIMEOUT`` seconds of being
  accepted, and the whole request head (request line and headers) within the same time of
  its first byte, or it is closed;
- any single read or write that makes no progress for ``EMS_WEB_IO_TIMEOUT`` seconds fails
  (a client that stops reading its answer, or stops sending a body);
- the rest is gunicorn's: ``threads`` requests at once per worker, ``timeout`` for a frozen
  worker, ``keepalive`` for idle connections.

Configured by ``portal/gunicorn_conf.py`` (the Procfile's ``web``); in production put it behind a
reverse proxy that buffers requests (docs/operator-guide.md).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from functools import partial

from gunicorn.workers import gthread

from portal.env import Env

_env = Env()
HEADER_TIMEOUT = _env.int("EMS_WEB_HEADER_TIMEOUT", 10, minimum=1, maximum=300)
IO_TIMEOUT = _env.int("EMS_WEB_IO_TIMEOUT", 30, minimum=1, maximum=3600)


class _HeadDeadline:
    """Wraps a connection's request parser: the worker may cut a head that arrives too slowly."""

    def __init__(self, parser, conn, worker: ThreadWorker) -> None:
        self.parser, self.conn, self.worker = parser, conn, worker

    def __iter__(self):
        return self

    def __next__(self):
        self.worker.reading(self.conn, True)
        try:
            return next(self.parser)
        finally:
            self.worker.reading(self.conn, False)


class ThreadWorker(gthread.ThreadWorker):
    def init_process(self):
        self._fresh: dict = {}  # accepted, nothing received yet: conn -> deadline
        self._heads: dict = {}  # reading a request head: conn -> deadline
        super().init_process()

    def accept(self, server, listener):
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = gthread.TConn(self.cfg, sock, client, server)
        self.nr_conns += 1
        with self._lock:
            self._fresh[conn] = time.monotonic() + HEADER_TIMEOUT
            self.poller.register(
                conn.sock,
                gthread.selectors.EVENT_READ,
                partial(self.on_client_socket_readable, conn),
            )

    def on_client_socket_readable(self, conn, client):
        with self._lock:
            self._fresh.pop(conn, None)
        super().on_client_socket_readable(conn, client)

    def enqueue_req(self, conn):
        conn.init()
        conn.sock.settimeout(IO_TIMEOUT)
        if not isinstance(conn.parser, _HeadDeadline):
            conn.parser = _HeadDeadline(conn.parser, conn, self)
        fs = self.tpool.submit(self.handle, conn)
        self._wrap_future(fs, conn)

    def reading(self, conn, started: bool) -> None:
        with self._lock:
            if started:
                self._heads[conn] = time.monotonic() + HEADER_TIMEOUT
            else:
                self._heads.pop(conn, None)

    def murder_keepalived(self):
        super().murder_keepalived()
        now = time.monotonic()
        with self._lock:
            silent = [c for c, deadline in self._fresh.items() if deadline < now]
            slow = [c for c, deadline in self._heads.items() if deadline < now]
            for conn in silent:
                del self._fresh[conn]
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)
            for conn in slow:
                del self._heads[conn]
        for conn in silent:
            self.nr_conns -= 1
            conn.close()
        for conn in slow:
            # The thread blocked in recv() sees the end of the stream and closes the connection.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            self.log.info("closed a connection from %s: request head too slow", conn.client)
