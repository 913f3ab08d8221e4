"""The web process (real gunicorn, the Procfile's configuration) keeps answering /healthz while
slow clients hold connections open: slowloris heads are cut at EMS_WEB_HEADER_TIMEOUT, silent
connections too, and idle ones wait in the poller without a thread."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.procs import gunicorn, healthz

pytestmark = pytest.mark.integration


def slowloris(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz?worker=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    return socks


def dribble(socks: list[socket.socket]) -> int:
    """One more header byte on each socket still open; returns how many are still open."""
    alive = 0
    for s in socks:
        try:
            s.sendall(b"X")
            alive += 1
        except OSError:
            pass
    return alive


def closed_by_server(s: socket.socket) -> bool:
    s.settimeout(0.05)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_healthz_answers_promptly_beside_slowloris_sockets(tmp_path):
    """Six slowloris sockets (four stopped sync workers for 40 s) against one worker with the
    default 8 threads: /healthz keeps answering at once, and the server cuts each slow head at
    the header timeout."""
    with gunicorn(tmp_path, EMS_WEB_HEADER_TIMEOUT="4") as (url, port, _):
        socks = slowloris(port, 6)
        try:
            worst = 0.0
            started = time.monotonic()
            while time.monotonic() - started < 8:
                dribble(socks)
                worst = max(worst, healthz(url))
                time.sleep(0.5)
            assert worst < 2.0, f"/healthz took {worst:.1f}s beside slow clients"
            # All cut by the server after the 4 s head deadline (the loop ran 8 s).
            deadline = time.monotonic() + 10
            while not all(closed_by_server(s) for s in socks) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert all(closed_by_server(s) for s in socks)
        finally:
            for s in socks:
                s.close()


def test_more_slow_clients_than_threads_wait_only_for_the_header_timeout(tmp_path):
    """Two threads, six slowloris sockets: /healthz is served as soon as the head deadline
    frees the threads, not after the clients give up."""
    with gunicorn(tmp_path, EMS_WEB_THREADS="2", EMS_WEB_HEADER_TIMEOUT="2") as (url, port, _):
        socks = slowloris(port, 6)
        try:
            time.sleep(0.5)
            dribble(socks)
            took = healthz(url, timeout=30)
            assert took < 10, f"/healthz took {took:.1f}s"
        finally:
            for s in socks:
                s.close()


def test_silent_connections_are_closed_and_do_not_block(tmp_path):
    with gunicorn(tmp_path, EMS_WEB_HEADER_TIMEOUT="2", EMS_WEB_THREADS="2") as (url, port, _):
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        try:
            assert healthz(url) < 2.0
            deadline = time.monotonic() + 10
            while not all(closed_by_server(s) for s in socks) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert all(closed_by_server(s) for s in socks)
            assert healthz(url) < 2.0
        finally:
            for s in socks:
                s.close()
