"""The runtime server against in-process calls of the same SavedModel, and container starts.

    python bench/runtime_bench.py [--seconds 4] [--reps 3] [--skip-containers]

Two JPEG-in classifiers (``{"b64": …}`` string inputs): the seed's flower example and the
bigger Keras one of ``runtimes/examples/jpeg_classifier.py``, both generated at run time. For
each, in one run and interleaved rep by rep (the machine is shared: every ratio below is taken
between numbers measured in the same rep, then the median over reps is reported):
- in-process: the signature called from Python with a prepared tensor (batch-1 latency;
  images/s of single calls and of batches of 32);
- the runtime server (``python -m runtimes.server``) with batching off and on, load from
  ``wrk`` in another process: p50 at 1 connection, requests/s at 1 and 32 connections;
- each runtime image: ``docker run`` -> ``AVAILABLE`` with its example model.
The machine's load average is written next to the numbers. Writes the "Runtime server"
section of docs/benchmarks.md.
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
THREADS = 2  # runtime threads, and TensorFlow's intra-op threads in-process


def configure_tf() -> None:
    """TensorFlow's thread pools as the runtime sizes them (only before its first use)."""
    import tensorflow as tf

    from runtimes.loaders.tfserving import no_thread_spinning

    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    except RuntimeError:  # already initialised in this process: set at the start of main
        pass
    no_thread_spinning()  # as the runtime does, so the in-process reference is configured alike


class InProcess:
    """Direct calls of the SavedModel's signature, the way a Python program would serve it."""

    def __init__(self, model_dir: Path, jpeg: bytes) -> None:
        import tensorflow as tf

        configure_tf()
        path = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        self.fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        (name,) = self.fn.structured_input_signature[1].keys()
        self.one = {name: tf.constant([jpeg])}
        self.batch = {name: tf.constant([jpeg] * 32)}
        for _ in range(20):
            self.fn(**self.one)
            self.fn(**self.batch)

    def measure(self, seconds: float) -> dict[str, float]:
        samples = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            self.fn(**self.one)
            samples.append((time.perf_counter() - started) * 1000)
        batches, started = 0, time.perf_counter()
        while time.perf_counter() < started + seconds:
            self.fn(**self.batch)
            batches += 1
        return {
            "p50": statistics.median(samples),
            "single_ips": len(samples) / sum(samples) * 1000,
            "batch_ips": batches * 32 / (time.perf_counter() - started),
        }


def batch_mean(server: RunningServer) -> tuple[float, float]:
    """(sum, count) of the server's rows-per-model-call histogram so far."""
    metrics = server.request("GET", "/metrics")[1]
    sums = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("ems_runtime_batch_size_sum", "ems_runtime_batch_size_count"))
    }
    return sums.get("ems_runtime_batch_size_sum", 0.0), sums.get(
        "ems_runtime_batch_size_count", 0.0
    )


def served(server: RunningServer, body: bytes, seconds: int) -> dict[str, float]:
    url = f"{server.url}/v1/models/m:predict"
    one = run_wrk(url, body, connections=1, seconds=seconds)
    before = batch_mean(server)
    many = run_wrk(url, body, connections=32, seconds=seconds)
    after = batch_mean(server)
    calls = after[1] - before[1]
    return {
        "p50": one.p50_ms,
        "p99": one.p99_ms,
        "rps1": one.requests_per_s,
        "rps32": many.requests_per_s,
        "failed": one.non_2xx + one.errors + many.non_2xx + many.errors,
        "mean_batch": (after[0] - before[0]) / calls if calls else 1.0,
    }


def bench_model(model_dir: Path, jpeg: bytes, seconds: int, reps: int) -> dict[str, object]:
    """Interleaved reps of in-process, server without and with batching, on one model."""
    body = json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode()
    direct = InProcess(model_dir, jpeg)
    flags = {"off": ["--max-batch-size", "0"], "on": ["--max-batch-size", "32"]}
    servers = {
        key: RunningServer("tfserving", model_dir, threads=THREADS, extra_args=extra)
        for key, extra in flags.items()
    }
    runs: dict[str, list[dict[str, float]]] = {"in": [], "off": [], "on": []}
    loads = [os.getloadavg()[0]]
    try:
        for server in servers.values():
            server.start()
            url = f"{server.url}/v1/models/m:predict"
            run_wrk(url, body, connections=4, seconds=2)  # warm the connection paths
        for _ in range(reps):
            runs["in"].append(direct.measure(seconds))
            for key, server in servers.items():
                runs[key].append(served(server, body, seconds))
            loads.append(os.getloadavg()[0])
    finally:
        for server in servers.values():
            server.stop()

    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    def ratio(fn) -> float:  # per rep, then the median: same-rep numbers only
        return statistics.median(fn(i) for i in range(reps))

    return {
        "runs": runs,
        "med": med,
        "added_off": ratio(lambda i: runs["off"][i]["p50"] - runs["in"][i]["p50"]),
        "added_on": ratio(lambda i: runs["on"][i]["p50"] - runs["in"][i]["p50"]),
        "gain32": ratio(lambda i: runs["on"][i]["rps32"] / runs["off"][i]["rps32"]),
        "gain1": ratio(lambda i: runs["on"][i]["rps1"] / runs["off"][i]["rps1"]),
        "inproc_gain": ratio(lambda i: runs["in"][i]["batch_ips"] / runs["in"][i]["single_ips"]),
        "failed": sum(r["failed"] for k in ("off", "on") for r in runs[k]),
        "loads": loads,
    }


def model_rows(title: str, r: dict[str, object]) -> list[list[str]]:
    med = r["med"]
    return [
        [
            f"{title}: in-process call",
            f"{med('in', 'p50'):.2f}",
            "—",
            f"{med('in', 'single_ips'):.0f} (single calls)",
            f"{med('in', 'batch_ips'):.0f} (batches of 32)",
        ],
        [
            f"{title}: server, batching off",
            f"{med('off', 'p50'):.2f}",
            f"{r['added_off']:+.2f}",
            f"{med('off', 'rps1'):.0f}",
            f"{med('off', 'rps32'):.0f}",
        ],
        [
            f"{title}: server, adaptive batching (32)",
            f"{med('on', 'p50'):.2f}",
            f"{r['added_on']:+.2f}",
            f"{med('on', 'rps1'):.0f}",
            f"{med('on', 'rps32'):.0f} (mean batch {med('on', 'mean_batch'):.1f})",
        ],
    ]


def spread(r: dict[str, object], key: str, field: str) -> str:
    values = [run[field] for run in r["runs"][key]]
    return f"{min(values):.2f}–{max(values):.2f}"


BOUNDS = (
    "- What bounds it: the 2 cores, shared by `wrk`, the server's event loop, TensorFlow's two "
    "intra-op threads and the other engineers' jobs. At one connection the request path itself "
    "is small: the server's Python work per predict request beyond the bare signature call "
    "(orjson parse, b64 into a bytes array, `tf.constant`, outputs to NumPy, orjson encode) is "
    "~40–90 µs on the flower model measured in-process, and a lone request runs inline on the "
    "event loop (no thread hop); the rest of the added p50 is the loopback round trip and the "
    "wake-ups of `wrk` and the server, which a loaded machine stretches. At 32 connections the "
    "model's batches of 32 need both cores while the loop parses, decodes and answers 32 "
    "requests per batch on the same cores, so the server reaches part of the in-process "
    "batch throughput; batching off, two pool threads run single calls side by side."
)


def verdicts(title: str, r: dict[str, object]) -> list[str]:
    added, gain, inproc = r["added_off"], r["gain32"], r["inproc_gain"]
    share = (gain - 1) / (inproc - 1) if inproc > 1 else 0.0
    worst = max(added, r["added_on"])
    return [
        f"- {title}: added p50 at 1 connection **{added:.2f} ms** without batching, "
        f"**{r['added_on']:.2f} ms** with it (target ≤ 0.30 ms: "
        + ("met" if worst <= 0.3 else f"missed by {worst - 0.3:.2f} ms")
        + f"); batching at 1 connection: {r['gain1']:.2f}× the requests/s of no batching; "
        f"at 32 connections **{gain:.1f}×** (in-process batches of 32: {inproc:.1f}× single "
        f"calls, so the server captures {share:.0%} of the model's own gain)."
    ]  # fmt: skip


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
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-containers", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    examples = Path(tempfile.mkdtemp(prefix="ems-bench-"))
    subprocess.run([sys.executable, "-m", "runtimes.examples", str(examples)], check=True, cwd=ROOT)
    from runtimes.examples.jpeg_classifier import write_jpeg_classifier

    configure_tf()
    write_jpeg_classifier(examples)
    cpus = os.cpu_count()
    models = {
        "flower (example)": (examples / "flower", (examples / "flower/flower.jpg").read_bytes()),
        "Keras JPEG classifier": (
            examples / "jpeg",
            (examples / "jpeg/sample_roses.jpg").read_bytes(),
        ),
    }
    results = {
        title: bench_model(path, jpeg, args.seconds, args.reps)
        for title, (path, jpeg) in models.items()
    }
    rows = [row for title, r in results.items() for row in model_rows(title, r)]
    loads = [load for r in results.values() for load in r["loads"]]
    text = [
        '`python bench/runtime_bench.py` — two JPEG-in classifiers (`{"b64": …}` inputs): '
        "the seed's flower example and a bigger Keras one (160×160 JPEGs, decoded and resized "
        "to 96×96 in the graph, three convolutions). "
        f"{args.reps} interleaved reps of {args.seconds} s per row and model (in-process, "
        "server without batching, server with batching, then again): medians over reps, and "
        "every ratio taken within a rep. Load from `wrk` in a separate process, "
        f"{THREADS} runtime threads. Machine: {cpus} cores shared with other engineers' "
        f"builds and tests; 1-minute load average during the run "
        f"{min(loads):.1f}–{max(loads):.1f}.",
        "",
        markdown_table(
            ["row", "p50 ms (1 conn)", "added p50 ms", "req/s at 1 conn", "req/s at 32 conns"],
            rows,
        ),
        "",
        *[line for title, r in results.items() for line in verdicts(title, r)],
        f"- Failed requests during the run: {sum(r['failed'] for r in results.values())}.",
        "- Spread over reps (min–max), which is the noise every number above carries: "
        + "; ".join(
            f"{title} in-process p50 {spread(r, 'in', 'p50')} ms, server p50 "
            f"{spread(r, 'off', 'p50')} / {spread(r, 'on', 'p50')} ms (batching off / on)"
            for title, r in results.items()
        )
        + ".",
        BOUNDS,
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
