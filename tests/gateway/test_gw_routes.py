"""Route stores, propagation, no Django in the gateway, and zero failures while draining."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time

import pytest

from gateway.routes import RouteError, make_route, open_store
from runtimes.testing import free_port
from tests.gateway.conftest import PREDICT_BODY, ROOT, gateway_env, route

PREDICT = "/v1/models/m:predict"


def test_store_roundtrip_and_generations(store):
    g1 = store.publish(route("ems-s1", [("i1", "http://127.0.0.1:1")]))
    g2 = store.publish(route("ems-s2", [("i2", "http://127.0.0.1:2", "starting")]))
    assert g2 > g1 and store.generation() == g2
    assert store.get("ems-s1")["generation"] == g1
    assert store.get("ems-s2")["instances"][0]["state"] == "starting"
    assert set(store.all()) == {"ems-s1", "ems-s2"}
    g3 = store.delete("ems-s1")
    assert g3 > g2 and store.get("ems-s1") is None and set(store.all()) == {"ems-s2"}
    assert store.wait_applied(g3, timeout=0.1)  # no gateway live: nothing to wait for
    with pytest.raises(RouteError):
        make_route(service_id="a/b", tenant_id=1, auth=False)
    with pytest.raises(RouteError):
        make_route(service_id="ems-x", tenant_id=1, auth=True)  # auth without a token


def test_propagation_and_delete(store, store_url, start_gateway, start_echo):
    url = start_echo("a")
    gw = start_gateway(store_url)
    times = []
    for i in range(5):
        gen = store.publish(route(f"ems-p{i}", [("i1", url)]))
        times.append(gw.wait_generation(gen, timeout=2))
    assert gw.request("POST", "/ems-p4" + PREDICT, {})[0] == 200
    gen = store.delete("ems-p4")
    assert store.wait_applied(gen, timeout=2)
    assert gw.request("POST", "/ems-p4" + PREDICT, {})[0] == 404
    print(f"route propagation ({store_url.split(':')[0]}): max {max(times) * 1000:.1f} ms")
    assert max(times) < 1.0


def test_redis_resync_after_reconnect(redis_url, start_gateway, start_echo):
    import redis

    url = start_echo("a")
    store_url = f"{redis_url}?prefix=ems:test:resync{free_port()}:"
    store = open_store(store_url)
    gw = start_gateway(store_url)
    r = redis.Redis.from_url(redis_url)
    # drop the gateway's pub/sub connection (only ours: it is named after our prefix); a
    # change made meanwhile arrives by the resync after the reconnect
    prefix = store_url.split("prefix=")[1]
    ours = [c for c in r.client_list() if c.get("name") == f"ems-routes-watch:{prefix}"]
    assert ours
    for client in ours:
        r.client_kill_filter(_id=client["id"])
    gen = store.publish(route("ems-rs", [("i1", url)]))
    gw.wait_generation(gen, timeout=5)
    assert gw.request("POST", "/ems-rs" + PREDICT, {})[0] == 200
    for key in r.scan_iter(match=prefix + "*"):
        r.delete(key)


def test_gateway_never_imports_django(file_store_url):
    port = free_port()
    script = (
        "import os, sys, threading, time, urllib.request, signal\n"
        "from gateway.__main__ import main\n"
        "def probe():\n"
        "    for _ in range(200):\n"
        "        try:\n"
        f"            urllib.request.urlopen('http://127.0.0.1:{port}/-/healthz'); break\n"
        "        except OSError: time.sleep(0.05)\n"
        "    print('DJANGO', 'django' in sys.modules, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=probe, daemon=True).start()\n"
        f"sys.exit(main(['--bind', '127.0.0.1:{port}', '--routes', '{file_store_url}']))\n"
    )
    env = gateway_env()
    assert "DJANGO_SETTINGS_MODULE" not in env
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, timeout=30
    )
    assert out.returncode == 0, out.stderr.decode()
    assert b"DJANGO False" in out.stdout


class Loop:
    """A steady request loop that never retries and records every failure."""

    def __init__(self, port: int, path: str, token_headers: dict[str, str]) -> None:
        self.port, self.path, self.headers = port, path, token_headers
        self.ok, self.failures = 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        body = json.dumps(PREDICT_BODY).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set():
            try:
                conn.request("POST", self.path, body=body, headers=self.headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append((resp.status, data[:200]))
            except OSError as exc:
                self.failures.append(("error", repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


def test_zero_failures_while_scaling_1_3_1(store, store_url, start_gateway, start_runtime):
    from gateway.tokens import generate_token, token_sha256

    token = generate_token()
    tokens = [token_sha256(token)]
    r1 = start_runtime()
    gen = store.publish(route("ems-z", [("r1", r1.url)], tokens))
    gw = start_gateway(store_url)
    gw.wait_generation(gen)
    loops = [Loop(gw.port, "/ems-z" + PREDICT, {"x-Auth-Token": token}) for _ in range(2)]
    for lp in loops:
        lp.thread.start()
    time.sleep(0.3)
    r2, r3 = start_runtime(), start_runtime()  # scale out 1 -> 3
    gen = store.publish(route("ems-z", [("r1", r1.url), ("r2", r2.url), ("r3", r3.url)], tokens))
    assert store.wait_applied(gen, timeout=5)
    time.sleep(0.5)
    # scale in 3 -> 1, keeping r3 (so r1, which served from the start, is drained too)
    served = {}

    def drain(leaving: str, srv, remaining) -> None:
        gen = store.publish(route("ems-z", remaining, tokens))  # 1. leave the route
        assert store.wait_drained([leaving], gen, timeout=10)  # 2.+3. applied, in-flight 0
        served[leaving] = predictions_served(srv)
        srv.stop()  # 4. SIGTERM
        time.sleep(0.3)

    drain("r2", r2, [("r1", r1.url), ("r3", r3.url)])
    drain("r1", r1, [("r3", r3.url)])
    time.sleep(0.3)
    for lp in loops:
        lp.stop.set()
        lp.thread.join(10)
    served["r3"] = predictions_served(r3)
    assert [f for lp in loops for f in lp.failures] == []
    assert sum(lp.ok for lp in loops) > 50
    assert all(n > 0 for n in served.values()), served  # every instance served some


def predictions_served(srv) -> float:
    metrics = srv.request("GET", "/metrics")[1]
    return sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in metrics.splitlines()
        if ln.startswith("ems_runtime_requests_total") and "predict" in ln
    )
