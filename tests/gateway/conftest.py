"""Gateway fixtures: real runtime servers, the real gateway process, both route stores.

Nothing here touches a database; the gateway runs as ``python -m gateway`` in a child
process without ``DJANGO_SETTINGS_MODULE``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.routes import make_route, open_store
from runtimes.testing import RunningServer, free_port
from tests.conftest import service_missing, tcp_open
from tests.gateway.holds import hold
from tests.testdata import require_testdata

PREDICT_BODY = {"instances": [{"sparseIndices": [1, 5], "sparseValues": [1.0, 1.0]}]}
ROOT = Path(__file__).resolve().parents[2]


def gateway_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class GatewayProcess:
    """``python -m gateway`` on a free port; ``start`` waits for /-/healthz."""

    def __init__(
        self, routes: str, admin: bool = False, port: int | None = None, **env: str
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the admin endpoints (/metrics, /-/*) are never on the public port: each gateway has
        # its own admin listener (a free port), or shares the one given with another gateway
        # (restart tests); ``admin`` is kept for the callers that ask for it explicitly
        given = env.get("EMS_GATEWAY_ADMIN_BIND", "")
        self.admin_port = int(given.rpartition(":")[2]) if given else free_port()
        env["EMS_GATEWAY_ADMIN_BIND"] = f"127.0.0.1:{self.admin_port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        argv = [sys.executable, "-m", "gateway", "--bind", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [*argv, "--routes", routes],
            env=gateway_env(**env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                # its own log line too: another gateway may answer on a shared port
                if (
                    self.request("GET", "/-/healthz", port=self.admin_port)[0] == 200
                    and " on http://" in self.log()
                ):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(self.log())

    def rss_kib(self) -> int:
        """Resident memory of the process (VmRSS in /proc/<pid>/status), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def upstreams(self) -> dict[str, dict]:
        """The gateway's view of its instances: id -> {inflight, ejected, ejections, url}."""
        doc = self.request("GET", "/-/upstreams", port=self.admin_port)[2]
        return {u["id"]: u for u in doc["upstreams"]}

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def request(self, method, path, body=None, headers=None, host=None, port=None):
        """(status, headers dict lower-cased, parsed JSON or text) over a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        try:
            raw_body = body is None or isinstance(body, bytes) or hasattr(body, "__next__")
            data = body if raw_body else json.dumps(body).encode()  # an iterator: chunked
            hdrs = {"Content-Type": "application/json", **(headers or {})}
            if host:
                hdrs["Host"] = host
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            ctype = rh.get("content-type", "")
            parsed = json.loads(raw) if "json" in ctype and raw else raw.decode()
            return resp.status, rh, parsed
        finally:
            conn.close()

    def generation(self) -> int:
        return self.request("GET", "/-/generation", port=self.admin_port)[2]["generation"]

    def gateway_id(self) -> str:
        return self.request("GET", "/-/generation", port=self.admin_port)[2]["gateway_id"]

    def wait_generation(self, generation: int, timeout: float = 5.0) -> float:
        """Seconds until the gateway reports ``generation`` (fails the test on timeout)."""
        started = time.monotonic()
        while self.generation() < generation:
            assert time.monotonic() - started < timeout, f"generation {generation} not applied"
            time.sleep(0.005)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def redis_url() -> str:
    """As tests/conftest.py's, repeated so ``--confcutdir tests/gateway`` runs without Django."""
    url = os.environ.get("REDIS_URL") or os.environ.get("EMS_TEST_REDIS_URL")
    if not url:
        service_missing("no REDIS_URL set")
    if not tcp_open(url, 6379):
        service_missing(f"Redis at {url} does not answer")
    return url


@pytest.fixture(params=["file", "redis"])
def store_url(request, tmp_path):
    """Both stores: a file under tmp_path, and Redis at REDIS_URL under a prefix of its own."""
    if request.param == "file":
        yield f"file://{tmp_path}/routes.json"
        return
    base = request.getfixturevalue("redis_url")
    prefix = f"ems:test:{uuid.uuid4().hex[:8]}:"
    yield f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    import redis

    r = redis.Redis.from_url(base)
    for key in r.scan_iter(match=prefix + "*"):
        r.delete(key)
    r.close()


@pytest.fixture
def file_store_url(tmp_path):
    return f"file://{tmp_path}/routes.json"


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def start_gateway():
    started: list[GatewayProcess] = []

    def start(
        routes: str, admin: bool = False, port: int | None = None, **env: str
    ) -> GatewayProcess:
        gw = GatewayProcess(routes, admin, port, **env)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def start_runtime():
    started: list[RunningServer] = []
    lr_model = require_testdata() / "models/angel/lr/lr-model"

    def start() -> RunningServer:
        srv = RunningServer("angel", lr_model, threads=1).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def route(sid, instances, tokens=(), not_after=None, tenant_id=1):
    """A route for ``instances``: a list of (id, url) or (id, url, state)."""
    insts = [
        {"id": i[0], "url": i[1], "state": i[2] if len(i) > 2 else "healthy"} for i in instances
    ]
    return make_route(
        service_id=sid,
        tenant_id=tenant_id,
        auth=bool(tokens),
        token_sha256=list(tokens),
        token_not_after=not_after,
        instances=insts,
    )


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with its name, the path and the headers it received; ``?sleep=S`` waits;
    ``?hold=K`` waits until the test sets ``hold(K)`` (event-driven, no timing guess)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        query = parse_qs(urlsplit(self.path).query)
        if "sleep" in query:
            time.sleep(float(query["sleep"][0]))
        if "hold" in query:
            hold(query["hold"][0]).wait(60)
        if "echo" in query:  # the body back, as it came
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        out = json.dumps(
            {
                "name": self.server.name,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body_len": len(body),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def start_echo():
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        srv.daemon_threads = True
        srv.name = name
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()
