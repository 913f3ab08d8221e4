"""Least-outstanding balancing, the single retry on a refused connection, in-flight counts."""

from __future__ import annotations

import threading
import time

from tests.gateway.conftest import route
from tests.gateway.holds import hold

PREDICT = "/v1/models/m:predict"


def test_least_outstanding_requests(file_store_url, start_gateway, start_echo):
    from gateway.routes import open_store

    store = open_store(file_store_url)
    a, b = start_echo("a"), start_echo("b")
    gen = store.publish(route("ems-lor", [("ia", a), ("ib", b)]))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    # idle: both instances get traffic
    names = [gw.request("POST", "/ems-lor" + PREDICT, {})[2]["name"] for _ in range(8)]
    assert set(names) == {"a", "b"}
    # one request is held by its instance until we release it; everything else goes to the
    # other one (no race against a sleep: the hold ends when the test says so)
    slow: dict = {}
    release = hold("lor")
    t = threading.Thread(
        target=lambda: slow.update(r=gw.request("POST", "/ems-lor" + PREDICT + "?hold=lor", {}))
    )
    t.start()
    deadline = time.monotonic() + 5
    while not gw.request("GET", "/-/inflight", port=gw.admin_port)[2]["inflight"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    busy = next(iter(gw.request("GET", "/-/inflight", port=gw.admin_port)[2]["inflight"]))
    assert gw.request("GET", f"/-/inflight?instance={busy}", port=gw.admin_port)[2]["inflight"] == 1
    others = {gw.request("POST", "/ems-lor" + PREDICT, {})[2]["name"] for _ in range(10)}
    still = gw.request("GET", f"/-/inflight?instance={busy}", port=gw.admin_port)[2]
    assert still["inflight"] == 1  # still held
    release.set()
    t.join()
    held = slow["r"][2]["name"]
    assert busy == "i" + held
    assert others == ({"a", "b"} - {held})
    assert (
        'ems_gateway_instance_inflight{instance="ia"} 0'
        in gw.request("GET", "/metrics", port=gw.admin_port)[2]
    )


def test_retry_once_on_refused(file_store_url, start_gateway, start_echo):
    from gateway.routes import open_store

    store = open_store(file_store_url)
    live = start_echo("live")
    gen = store.publish(route("ems-rt", [("dead", "http://127.0.0.1:9"), ("live", live)]))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    for _ in range(10):
        status, _, body = gw.request("POST", "/ems-rt" + PREDICT, {})
        assert (status, body["name"]) == (200, "live")
    # two dead instances: one retry only, then 502
    gen = store.publish(
        route("ems-rt", [("d1", "http://127.0.0.1:9"), ("d2", "http://127.0.0.1:7")])
    )
    gw.wait_generation(gen)
    assert gw.request("POST", "/ems-rt" + PREDICT, {})[0] == 502


def test_client_leaving_frees_the_instance(file_store_url, start_gateway, start_echo):
    import socket

    from gateway.routes import open_store

    store = open_store(file_store_url)
    gen = store.publish(route("ems-gone", [("ig", start_echo("g"))]))
    gw = start_gateway(file_store_url)
    gw.wait_generation(gen)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(
            b"POST /ems-gone/v1/models/m:predict?sleep=5 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )
        deadline = time.monotonic() + 5
        while gw.request("GET", "/-/inflight?instance=ig", port=gw.admin_port)[2]["inflight"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    deadline = time.monotonic() + 15
    while gw.request("GET", "/-/inflight?instance=ig", port=gw.admin_port)[2]["inflight"] != 0:
        assert time.monotonic() < deadline, "in-flight count leaked after the client left"
        time.sleep(0.01)
    assert store.wait_drained(["ig"], gen, timeout=15)
    assert gw.request("POST", "/ems-gone" + PREDICT, {})[0] == 200


def test_idle_client_connections_are_closed(file_store_url, start_gateway):
    import socket

    gw = start_gateway(file_store_url, EMS_GATEWAY_KEEPALIVE_TIMEOUT="0.5")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=40) as sock:
        sock.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 404")  # admin endpoints: not here
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the gateway, not by us
        # by the configured 0.5 s, not the 75 s default (a bound far from both: no flake)
        assert time.monotonic() - started < 30
