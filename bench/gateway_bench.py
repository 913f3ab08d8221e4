"""The gateway against the runtime server direct and Debian's nginx as a reverse proxy.

    python bench/gateway_bench.py [--seconds 6] [--fast-only --rounds 8 --baseline-src DIR]

First the gateway against nginx in front of an upstream that is never the bottleneck
(``bench/gateway_fast.py``, its own section); then the rows below.

Upstream: ``python -m runtimes.server`` serving the Angel LR test model. Load: Debian's
``wrk`` from another process. Rows, from one run on this machine: direct, via nginx (its own
temporary config on a loopback port, one worker, upstream keep-alive), via the gateway with a
token; p50/p99 at 1 connection, requests/s at 32 connections. Then route propagation
(publish -> the gateway reports the generation) for the file store and, when REDIS_URL
answers, the Redis store. Writes the "Gateway" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import gateway_fast  # noqa: E402
from bench.report import markdown_table, write_section  # noqa: E402
from bench.wrk import run_wrk  # noqa: E402
from gateway.routes import make_route, open_store  # noqa: E402
from gateway.tokens import generate_token, token_sha256  # noqa: E402
from runtimes.testing import RunningServer, free_port  # noqa: E402

MODEL = ROOT.parent / "shared" / "testdata" / "models" / "angel" / "lr" / "lr-model"
BODY = json.dumps({"instances": [{"sparseIndices": [1, 5, 9], "sparseValues": [1.0, 1, 1]}]})
PREDICT = "/v1/models/m:predict"
ROUNDS = 2
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream runtime {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://runtime;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def start_gateway(
    routes: str, workers: int = 1, src: Path = ROOT
) -> tuple[subprocess.Popen, int, int]:
    """The gateway (of the source tree ``src``) on a free port; returns (process, public
    port, admin port). It is one process: ``workers`` other than 1 is refused."""
    if workers != 1:
        raise SystemExit("the gateway runs as one process (no worker setting)")
    port, admin = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    argv = [sys.executable, "-m", "gateway", "--bind", f"127.0.0.1:{port}"]
    argv += ["--admin-bind", f"127.0.0.1:{admin}"]
    proc = subprocess.Popen(
        [*argv, "--routes", routes, "--log-level", "WARNING"],
        cwd=src,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/-/healthz", timeout=2):
                return proc, port, admin
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError("gateway did not become healthy")


def generation(admin_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/-/generation", timeout=2) as r:
        return json.loads(r.read())["generation"]


def propagation(routes: str, upstream: str, rounds: int = 20) -> list[float]:
    """Seconds from ``publish`` returning to the gateway reporting that generation."""
    store = open_store(routes)
    proc, _, admin = start_gateway(routes)
    try:
        out = []
        for i in range(rounds):
            inst = [{"id": f"p{i}", "url": upstream, "state": "healthy"}]
            route = make_route(service_id="ems-bench-prop", tenant_id=0, auth=False, instances=inst)
            started = time.perf_counter()
            gen = store.publish(route)
            while generation(admin) < gen:
                time.sleep(0.001)
            out.append(time.perf_counter() - started)
            time.sleep(0.05)
        store.delete("ems-bench-prop")
        return out
    finally:
        proc.terminate()
        proc.wait(10)
        store.close()


def nginx_pids(master: int) -> list[int]:
    """The master and its workers (the workers do the proxying)."""
    time.sleep(0.2)
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--fast-only", action="store_true", help="only the fast-upstream rows")
    parser.add_argument("--rounds", type=int, default=8, help="fast upstream: rounds")
    parser.add_argument(
        "--baseline-src",
        help="fast upstream: also measure the gateway package of this folder (e.g. made by "
        "`git archive <commit> gateway | tar -x -C DIR`), interleaved with the others",
    )
    args = parser.parse_args()
    secs = args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="ems-gwbench-"))
    gateway_fast.run(start_gateway, tmp, args.rounds, min(secs, 3), 1, args.baseline_src)
    if args.fast_only:
        return
    token = generate_token()
    procs: list[subprocess.Popen] = []
    with RunningServer("angel", MODEL, threads=1) as srv:
        nginx_port = free_port()
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(tmp=tmp, port=nginx_port, upstream=srv.port)
        )
        procs.append(subprocess.Popen(["/usr/sbin/nginx", "-c", str(tmp / "nginx.conf")]))
        wait_http(f"http://127.0.0.1:{nginx_port}/v1/models/m")
        routes = f"file://{tmp}/routes.json"
        store = open_store(routes)
        store.publish(
            make_route(
                service_id="ems-bench",
                tenant_id=0,
                auth=True,
                token_sha256=[token_sha256(token)],
                instances=[{"id": "i1", "url": srv.url, "state": "healthy"}],
            )
        )
        gw, gw_port, _ = start_gateway(routes)
        procs.append(gw)
        targets = [
            ("direct to the runtime", f"{srv.url}{PREDICT}"),
            ("via nginx 1.22 (1 worker)", f"http://127.0.0.1:{nginx_port}{PREDICT}"),
            ("via the gateway, with token", f"http://127.0.0.1:{gw_port}/ems-bench{PREDICT}"),
        ]
        headers = {"x-Auth-Token": token}
        pids = {targets[0][0]: [srv.proc.pid], targets[1][0]: nginx_pids(procs[0].pid)}
        pids[targets[2][0]] = [gw.pid]
        results: dict = {}
        try:
            for _name, url in targets:  # warm every path up first
                run_wrk(url, BODY.encode(), connections=1, seconds=1, headers=headers)
            for _round in range(ROUNDS):  # interleaved, best of ROUNDS: the cores are shared
                for name, url in targets:
                    one = run_wrk(url, BODY.encode(), connections=1, seconds=secs, headers=headers)
                    cpu0 = cpu_seconds(pids[name])
                    many = run_wrk(
                        url, BODY.encode(), connections=32, seconds=secs, headers=headers, threads=2
                    )
                    used = (cpu_seconds(pids[name]) - cpu0) / (many.requests_per_s * secs)
                    best = results.get(name)
                    if best is None or one.p50_ms < best[0].p50_ms:
                        best = (one, best[1] if best else many, used)
                    if many.requests_per_s > best[1].requests_per_s:
                        best = (best[0], many, used)
                    results[name] = best
                    print(name, one, many, f"{used * 1e6:.0f} us CPU/request", flush=True)
            prop = {"file": propagation(routes, srv.url)}
            if url_r := redis_url():
                prop["redis"] = propagation(f"{url_r}?prefix=ems:bench:", srv.url)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    write(results, prop, secs)


def write(results: dict, prop: dict, secs: int) -> None:
    (d1, _, _), (_, nn, n_cpu), (g1, gn, g_cpu) = results.values()
    rows = []
    for name, (one, many, cpu) in results.items():
        errs = one.non_2xx + one.errors + many.non_2xx + many.errors
        rows.append(
            [
                name,
                f"{one.p50_ms:.3f}",
                f"{one.p99_ms:.3f}",
                "-" if one is d1 else f"{one.p50_ms - d1.p50_ms:+.3f}",
                "-" if one is d1 else f"{one.p99_ms - d1.p99_ms:+.3f}",
                f"{many.requests_per_s:,.0f}",
                f"{many.requests_per_s / nn.requests_per_s:.2f}",
                f"{cpu * 1e6:.0f}",
                errs,
            ]
        )
    table = markdown_table(
        [
            "path",
            "p50 ms (1 conn)",
            "p99 ms (1 conn)",
            "added p50 ms",
            "added p99 ms",
            "req/s (32 conn)",
            "× nginx",
            "CPU µs/req of the row's server",
            "errors",
        ],
        rows,
    )
    added = g1.p50_ms - d1.p50_ms
    ratio = gn.requests_per_s / nn.requests_per_s
    verdicts = [
        f"- Added latency at p50: **{added * 1000:.0f} µs** (target ≤ 300 µs): "
        + ("met." if added <= 0.3 else f"**missed by {(added - 0.3) * 1000:.0f} µs**."),
        f"- Throughput at 32 connections: **{ratio:.2f}× nginx** (target ≥ 0.5×): "
        + ("met." if ratio >= 0.5 else f"**missed by {0.5 - ratio:.2f}×**."),
    ]
    prop_rows = [
        [
            store,
            len(s),
            f"{statistics.median(s) * 1000:.1f}",
            f"{max(s) * 1000:.1f}",
            "met" if max(s) <= 1.0 else "missed",
        ]
        for store, s in prop.items()
    ]
    load = os.getloadavg()[0]
    body = f"""Written by `python bench/gateway_bench.py` ({secs} s per wrk run, `wrk --latency`
from another process; 1 connection = `-t1 -c1`, 32 connections = `-t2 -c32`; {ROUNDS} rounds
interleaved across the rows, best round per row and load). The CPU column is the CPU time the
row's own server process (runtime, nginx, gateway) spent per request at 32 connections.
Upstream: the runtime server (`--runtime angel`, 1 model thread) serving the Angel LR test
model; the same POST (`{BODY}`) with an `x-Auth-Token` header on every row.
nginx and the gateway are one process each; both keep upstream connections alive.
Load average at the end of the run: {load:.2f} on {os.cpu_count()} cores shared with other work.

{table}

{chr(10).join(verdicts)}

What bounds these numbers: wrk, the proxy and the runtime share {os.cpu_count()} cores with
other work (load {load:.2f}), so every process in the chain gets a fair share of CPU time, not a
core of its own. At 32 connections a proxy can only lose throughput against the direct row
(the runtime, one Python process, is the ceiling); the proxy that needs more CPU per request
loses more when its share is small. The gateway spends {g_cpu * 1e6:.0f} µs of CPU per request
(roughly half in the kernel for its four loopback socket calls, half in Python: parse, token
hash, pick, forward, count) against nginx's {n_cpu * 1e6:.0f} µs. At 1 connection the added
latency is that work plus one extra loopback round trip; p99 at 1 connection is scheduling
noise on busy cores for every row.

Route propagation (`publish` returns -> the gateway's `/-/generation` reports it; target ≤ 1 s):

{markdown_table(["store", "changes", "p50 ms", "max ms", "target"], prop_rows)}

The file store is polled every 50 ms (`gateway.routes.POLL_SECONDS`); Redis pushes the change
over pub/sub.
"""
    write_section("Gateway", body)
    print(body)


if __name__ == "__main__":
    main()
