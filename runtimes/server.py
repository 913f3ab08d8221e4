"""``python -m runtimes.server``: serve one model folder over TF-Serving's REST API.

The port opens at once and reports the version as ``LOADING``; the model is loaded and warmed
up in a worker thread and only then reported ``AVAILABLE``. A model that cannot be loaded ends
the process with status 1 and the reason on stderr (the platform shows those lines to users).
SIGTERM stops accepting connections, lets in-flight requests finish, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from runtimes import RUNTIMES
from runtimes.app import DEFAULT_INLINE_MS, RuntimeApp, ServedModel
from runtimes.batching import Batcher
from runtimes.cpus import available_cpus
from runtimes.errors import ModelLoadError
from runtimes.http import KEEPALIVE_SECONDS, HttpConn
from runtimes.loaders import load_model
from runtimes.versions import resolve_version

log = logging.getLogger("runtimes.server")

DRAIN_SECONDS = 30.0
BATCHING_RUNTIMES = ("tfserving", "openvino")
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_WAIT_MS = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtimes.server", description=__doc__)
    # The runtime images set EMS_RUNTIME, so `docker run IMAGE --model-dir ...` needs no flag.
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=os.environ.get("EMS_RUNTIME") or None,
        required=not os.environ.get("EMS_RUNTIME"),
    )
    parser.add_argument("--model-dir", required=True, help="model folder or numbered versions")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=0, help="worker threads (0: CPU quota)")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help="adaptive batching of row requests for tfserving/openvino: most rows per model "
        f"call (0 or 1: off; default {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help="longest a batch waits for more requests while others are arriving "
        f"(default {DEFAULT_MAX_WAIT_MS} ms)",
    )
    parser.add_argument(
        "--inline-max-ms",
        type=float,
        default=DEFAULT_INLINE_MS,
        help="a request whose kind of model call takes under this on average (running mean) "
        "runs on the event loop when no other request is being answered, saving two thread "
        f"hops (0: never; default {DEFAULT_INLINE_MS} ms)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def load(
    served: ServedModel,
    runtime: str,
    version_path: object,
    threads: int,
    rt: RuntimeApp,
    args: argparse.Namespace,
) -> None:
    """Load and warm up in a worker thread; state flips to AVAILABLE only when both succeed."""
    started = time.perf_counter()
    model = load_model(runtime, version_path, threads)  # type: ignore[arg-type]
    loaded = time.perf_counter()
    model.warmup()
    if rt.batcher is None and runtime in BATCHING_RUNTIMES and args.max_batch_size > 1:
        rt.batcher = Batcher(
            model.run,  # type: ignore[attr-defined]
            max_batch=args.max_batch_size,
            max_wait_s=args.max_batch_wait_ms / 1000,
            observe=rt.metrics.batch_size.observe,
            inline_max_s=args.inline_max_ms / 1000,
        )
        model.batcher = rt.batcher  # type: ignore[attr-defined]
    served.model = model
    served.state = "AVAILABLE"
    log.info(
        "model %s version %s AVAILABLE (load %.2fs, warm-up %.2fs)",
        served.name,
        served.version,
        loaded - started,
        time.perf_counter() - loaded,
    )


async def serve(args: argparse.Namespace) -> int:
    version = resolve_version(args.model_dir)
    threads = args.threads or available_cpus()
    served = ServedModel(args.model_name, version.version)
    # With batching, request threads wait in the batcher while one thread runs the model, so
    # the pool needs room for a whole batch of waiting requests besides the CPU-bound ones.
    batching = args.runtime in BATCHING_RUNTIMES and args.max_batch_size > 1
    workers = threads + args.max_batch_size if batching else threads
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model")
    rt = RuntimeApp(served, pool, inline_max_s=args.inline_max_ms / 1000)
    loop = asyncio.get_running_loop()
    rt.loop = loop
    listener = await loop.create_server(
        lambda: HttpConn(rt), args.host, args.port, reuse_address=True, backlog=1024
    )
    reaper = loop.create_task(close_idle(rt))
    log.info(
        "%s runtime listening on http://%s:%d, model %s version %s from %s, %d threads",
        args.runtime,
        args.host,
        args.port,
        served.name,
        served.version,
        version.path,
        threads,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = loop.run_in_executor(
        pool, load, served, args.runtime, version.path, threads, rt, args
    )
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if loading.done() and loading.exception() is not None:
        exc = loading.exception()
        served.state = "END"
        if isinstance(exc, ModelLoadError):
            log.error("cannot serve model %s: %s", served.name, exc)
        else:
            log.error("cannot serve model %s", served.name, exc_info=exc)
        code = 1
    else:
        await stopping
        log.info("SIGTERM: no new connections, finishing in-flight requests")
    await drain(rt, listener)
    reaper.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
    if rt.batcher is not None:
        rt.batcher.stop()
    if served.model is not None:
        served.model.close()
    log.info("stopped")
    return code


async def close_idle(rt: RuntimeApp) -> None:
    """Close keep-alive connections idle for longer than KEEPALIVE_SECONDS."""
    while True:
        await asyncio.sleep(5.0)
        since = time.monotonic() - KEEPALIVE_SECONDS
        for conn in list(rt.connections):
            conn.close_if_idle(since)


async def drain(rt: RuntimeApp, listener: asyncio.base_events.Server) -> None:
    """Stop listening, close idle connections, let requests in flight finish (answered with
    ``connection: close``), up to DRAIN_SECONDS."""
    rt.draining = True
    listener.close()
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        for conn in list(rt.connections):
            conn.close_if_idle(float("inf"))
        if (rt.busy <= 0 and not rt.connections) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    for conn in list(rt.connections):  # past the deadline: whatever is left
        if conn.transport is not None:
            conn.transport.close()


def run_loop(coro: object) -> int:
    """uvloop where installed (every runtime image has it), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return run_loop(serve(args))
    except ModelLoadError as exc:
        log.error("cannot serve model %s: %s", args.model_name, exc)
        return 1
    except OSError as exc:  # the port is taken, the address is wrong
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1


def exit_now(code: int) -> None:
    """Exit without interpreter teardown once the server has drained: an embedded JVM (PMML)
    waits on its own threads at exit and TensorFlow's teardown is slow; neither holds state
    that needs saving."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
