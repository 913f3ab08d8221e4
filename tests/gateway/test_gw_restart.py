"""The gateway's own faults: a restart (new process first, then SIGTERM the old one) under
load, kill -9 under load, the route store (Redis) away for a while, and reports of gateways
that died. Each test prints the requests that failed and the recovery time."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from gateway import routes as routes_mod
from gateway.routes import open_store
from runtimes.testing import free_port
from tests.gateway.conftest import PREDICT_BODY, route
from tests.gateway.load import Load, failed, summary
from tests.gateway.test_gw_faults import wait_until

PREDICT = "/v1/models/m:predict"


def test_restart_refuses_no_connection(file_store_url, start_gateway, start_runtime):
    """Start B on A's port (SO_REUSEPORT), then SIGTERM A: A stops accepting, takes what
    the kernel queued for it, finishes its requests (``connection: close``) and exits."""
    a_srv, b_srv = start_runtime(), start_runtime()
    gen = open_store(file_store_url).publish(
        route("ems-rst", [("ia", a_srv.url), ("ib", b_srv.url)])
    )
    gw_a = start_gateway(file_store_url, admin=True)
    gw_a.wait_generation(gen)
    path = "/ems-rst" + PREDICT
    fresh = Load(gw_a.port, path, PREDICT_BODY, threads=2, keepalive=False, pause=0.002)
    kept = Load(gw_a.port, path, PREDICT_BODY, threads=2, keepalive=True, pause=0.002)
    with fresh, kept:
        wait_until(lambda: fresh.count() + kept.count() >= 50, 30, "load running")
        # B listens beside A, on both of A's ports (SO_REUSEPORT on each listener)
        admin = f"127.0.0.1:{gw_a.admin_port}"
        start_gateway(file_store_url, admin=True, port=gw_a.port, EMS_GATEWAY_ADMIN_BIND=admin)
        n = fresh.count() + kept.count()
        wait_until(lambda: fresh.count() + kept.count() >= n + 50, 30, "load on A and B")
        stopped = time.monotonic()
        gw_a.proc.send_signal(signal.SIGTERM)
        gw_a.proc.wait(35)
        drained = time.monotonic() - stopped
        n = fresh.count() + kept.count()
        wait_until(lambda: fresh.count() + kept.count() >= n + 100, 30, "load on B alone")
    results = fresh.results + kept.results
    print(f"\nrestart (B listens, then SIGTERM A) under load: {summary(results)}; A drained and "
          f"exited in {drained:.2f}s")  # fmt: skip
    assert gw_a.proc.returncode == 0
    assert not failed(results), summary(results)
    assert gw_a.request("GET", "/-/generation", port=gw_a.admin_port)[0] == 200  # B's now
    assert "queued connections taken" in gw_a.log()


def test_kill_9_then_a_new_gateway_serves_the_same_routes_at_once(
    store_url, start_gateway, start_runtime
):
    """Cold: A is killed, B started after it (refused while nothing listens, then every
    request answered: routes are loaded before B listens, so never a 404). Standby: C listens
    beside B (SO_REUSEPORT) and B is killed: only what was in flight to B fails."""
    srv = start_runtime()
    store = open_store(store_url)
    gen = store.publish(route("ems-k9", [("i1", srv.url)]))
    gw_a = start_gateway(store_url, admin=True)
    gw_a.wait_generation(gen)
    path = "/ems-k9" + PREDICT
    threads = 2
    with Load(gw_a.port, path, PREDICT_BODY, threads=threads, keepalive=False, pause=0.005) as load:
        wait_until(lambda: load.count() >= 30, 30, "load running")
        killed = time.monotonic()
        gw_a.proc.kill()
        gw_a.proc.wait()
        gw_b = start_gateway(store_url, admin=True, port=gw_a.port)
        ready = time.monotonic()
        n = load.count()
        wait_until(lambda: load.count() >= n + 50, 30, "load on B")
        gw_c = start_gateway(store_url, admin=True, port=gw_a.port)  # the standby
        n = load.count()
        wait_until(lambda: load.count() >= n + 50, 30, "load on B and C")
        killed_b = time.monotonic()
        gw_b.proc.kill()
        gw_b.proc.wait()
        n = load.count()
        wait_until(lambda: load.count() >= n + 50, 30, "load on C")
    during = [r for r in load.results if killed <= r.ended < ready]
    after = [r for r in load.results if ready <= r.started and r.ended < killed_b]
    standby = [r for r in load.results if r.ended >= killed_b]
    first_ok = min(r.ended for r in load.results if r.ended > killed and r.status == 200)
    print(f"\nkill -9 of the gateway, new one started then: {len(failed(during))} refused of "
          f"{len(during)} while none listened; first answer {first_ok - killed:.2f}s after the "
          f"kill; then {summary(after)}. With a standby listening: {summary(standby)}")  # fmt: skip
    assert all(r.status in (0, 200) for r in load.results)  # never a 404 from an empty table
    assert not failed(after), summary(after)
    assert len(failed(standby)) <= threads  # at most the requests in flight to B
    assert gw_c.generation() >= gen


def test_reports_expire_and_drains_ignore_them(store_url, monkeypatch):
    """A gateway killed without ``forget`` leaves a report; it expires after REPORT_TTL and
    neither ``gateways()`` nor ``wait_drained`` waits on it after that."""
    monkeypatch.setattr(routes_mod, "REPORT_TTL", 1.0)
    store = open_store(store_url)
    try:
        gen = store.publish(route("ems-ttl", [("i1", "http://127.0.0.1:9")]))
        store.report("dead-gw", gen, {"i1": 3})  # then "killed": never reports again
        store.report("live-gw", gen, {})
        assert set(store.gateways()) == {"dead-gw", "live-gw"}
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # the live one keeps reporting
            store.report("live-gw", gen, {})
            time.sleep(0.2)
        assert set(store.gateways()) == {"live-gw"}
        started = time.monotonic()
        assert store.wait_drained(["i1"], gen, timeout=5)
        assert time.monotonic() - started < 1.0
        if hasattr(store, "r"):  # Redis: the key itself is gone, not only filtered out
            assert store.r.exists(store.k_reports + "dead-gw") == 0
            assert store.r.smembers(store.k_report_ids) == {b"live-gw"}
        else:
            assert not (store.reports_dir / "dead-gw.json").exists()
    finally:
        store.close()


class PrivateRedis:
    """A redis-server of our own on a free port (with an append-only file, as production
    Redis keeps routes across a restart), to stop and start; the shared one is never touched."""

    def __init__(self, workdir) -> None:
        self.port = free_port()
        self.dir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--dir", str(self.dir)]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        r = redis.Redis.from_url(self.url)
        wait_until(lambda: self._ping(r), 10, "redis-server up")
        r.close()

    @staticmethod
    def _ping(r) -> bool:
        try:
            return bool(r.ping())
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_redis_away_serves_last_routes_then_catches_up(tmp_path, start_gateway, start_runtime):
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        srv = start_runtime()
        store = open_store(redis.url)
        gen = store.publish(route("ems-rd", [("i1", srv.url)]))
        gw = start_gateway(redis.url)
        gw.wait_generation(gen)
        with Load(gw.port, "/ems-rd" + PREDICT, PREDICT_BODY, threads=2) as load:
            wait_until(lambda: load.count() >= 20, 30, "load running")
            redis.stop()
            down = time.monotonic()
            time.sleep(4)  # away for a while: the gateway serves from its last table
            during = load.since(down)
            redis.start()
            up = time.monotonic()
            gen2 = store.publish(route("ems-rd2", [("i1", srv.url)]))  # a change after
            caught_up = gw.wait_generation(gen2, timeout=20)
            assert gw.request("POST", "/ems-rd2" + PREDICT, PREDICT_BODY)[0] == 200
            reported = wait_until(lambda: gw.gateway_id() in store.gateways(), 10, "reported")
        print(f"\nRedis down 4 s: {summary(during)} while down; a change published after the "
              f"restart applied in {caught_up:.2f}s, report back in "
              f"{time.monotonic() - up - caught_up:.2f}s")  # fmt: skip
        assert not failed(load.results), summary(load.results)
        assert len(during) > 10
        assert reported < 10
        store.close()
    finally:
        redis.stop()


def test_redis_back_empty_keeps_the_last_routes_until_republished(
    tmp_path, start_gateway, start_runtime
):
    """Redis restarted without its data (generation 0, no routes): the gateway keeps its
    table instead of answering 404 for everything until the control plane's next pass."""
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server binary")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        srv = start_runtime()
        store = open_store(redis.url)
        store.publish(route("ems-other", [("i9", srv.url)]))
        gen = store.publish(route("ems-em", [("i1", srv.url)]))
        gw = start_gateway(redis.url)
        gw.wait_generation(gen)
        with Load(gw.port, "/ems-em" + PREDICT, PREDICT_BODY, threads=2) as load:
            wait_until(lambda: load.count() >= 20, 30, "load running")
            redis.stop()
            shutil.rmtree(tmp_path / "appendonlydir")  # its data is lost
            redis.start()
            wait_until(lambda: "lost its data" in gw.log(), 20, "resynced with the empty store")
            assert gw.generation() == 0
            n = load.count()
            wait_until(lambda: load.count() >= n + 20, 30, "load on the kept table")
            gen = store.publish(route("ems-em", [("i1", srv.url)]))  # the control plane's pass
            applied = gw.wait_generation(gen, timeout=10)
            n = load.count()
            wait_until(lambda: load.count() >= n + 20, 30, "load after the republish")
        print(f"\nRedis back empty: {summary(load.results)}; republished route applied in "
              f"{applied:.3f}s")  # fmt: skip
        assert not failed(load.results), summary(load.results)
        store.close()
    finally:
        redis.stop()
