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
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from runtimes import RUNTIMES
from runtimes.app import RuntimeApp, ServedModel
from runtimes.cpus import available_cpus
from runtimes.errors import ModelLoadError
from runtimes.loaders import load_model
from runtimes.versions import resolve_version

log = logging.getLogger("runtimes.server")

DRAIN_SECONDS = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtimes.server", description=__doc__)
    parser.add_argument("--runtime", required=True, choices=RUNTIMES)
    parser.add_argument("--model-dir", required=True, help="model folder or numbered versions")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=0, help="worker threads (0: CPU quota)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def load(served: ServedModel, runtime: str, version_path: object, threads: int) -> None:
    """Load and warm up in a worker thread; state flips to AVAILABLE only when both succeed."""
    started = time.perf_counter()
    model = load_model(runtime, version_path, threads)  # type: ignore[arg-type]
    loaded = time.perf_counter()
    model.warmup()
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
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model")
    rt = RuntimeApp(served, pool)
    runner = web.AppRunner(rt.build(), access_log=None, shutdown_timeout=DRAIN_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
    await site.start()
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
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = loop.run_in_executor(pool, load, served, args.runtime, version.path, threads)
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
    await runner.cleanup()  # closes the listener, then waits for running handlers
    pool.shutdown(wait=True, cancel_futures=True)
    if served.model is not None:
        served.model.close()
    log.info("stopped")
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(serve(args))
    except ModelLoadError as exc:
        log.error("cannot serve model %s: %s", args.model_name, exc)
        return 1
    except OSError as exc:  # the port is taken, the address is wrong
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
