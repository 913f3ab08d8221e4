"""``python -m gateway``: run the gateway (configuration: flags or EMS_GATEWAY_*)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import socket
import threading
import time
import uuid

from gateway.app import Gateway, Limits
from gateway.protocol import ClientConn
from gateway.routes import RouteStore, open_store, store_url_from_env
from gateway.wake import Waker

log = logging.getLogger("gateway")
REPORT_EVERY = 0.05  # how often a changed generation / in-flight table is reported
HEARTBEAT = 2.0  # report at least this often (REPORT_TTL in gateway.routes is 15 s)
DRAIN_SECONDS = 30.0
TICK = 0.25  # slow-client limits, idle connections, health probes, memory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    p.add_argument("--bind", default=env("EMS_GATEWAY_BIND", "127.0.0.1:8080"), help="host:port")
    p.add_argument(
        "--routes",
        default=store_url_from_env(),
        help="redis://… or file:///…/routes.json (default: EMS_GATEWAY_ROUTES, REDIS_URL, "
        "else EMS_DATA_DIR/routes.json)",
    )
    p.add_argument("--domain", default=env("EMS_GATEWAY_DOMAIN", "ems.localhost"))
    p.add_argument("--max-body", type=int, default=int(env("EMS_GATEWAY_MAX_BODY", 33554432)))
    p.add_argument(
        "--upstream-timeout", type=float, default=float(env("EMS_GATEWAY_UPSTREAM_TIMEOUT", 60))
    )
    p.add_argument(
        "--admin-bind",
        default=env("EMS_GATEWAY_ADMIN_BIND", ""),
        help="host:port for /metrics and /-/* (never served on --bind); "
        "default 127.0.0.1:<the --bind port + 1>",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=float,
        default=float(env("EMS_GATEWAY_KEEPALIVE_TIMEOUT", 75)),
        help="seconds an idle client connection stays open",
    )
    d = Limits()
    for flag, var, kind, default, what in (
        ("--max-url", "EMS_GATEWAY_MAX_URL", int, d.max_url, "bytes of URL (414 over it)"),
        ("--max-header", "EMS_GATEWAY_MAX_HEADER", int, d.max_header, "bytes of headers (431)"),
        ("--header-timeout", "EMS_GATEWAY_HEADER_TIMEOUT", float, d.header_timeout,
         "seconds for a request head to arrive (408)"),
        ("--body-timeout", "EMS_GATEWAY_BODY_TIMEOUT", float, d.body_timeout,
         "seconds for a request body to arrive (408)"),
        ("--probe-after", "EMS_GATEWAY_PROBE_AFTER", float, d.probe_after,
         "seconds without an answer byte before the instance is probed"),
        ("--probe-timeout", "EMS_GATEWAY_PROBE_TIMEOUT", float, d.probe_timeout,
         "seconds a probe may take before the instance is ejected"),
    ):  # fmt: skip
        p.add_argument(flag, type=kind, default=kind(env(var, default)), help=what)
    p.add_argument(
        "--wake-timeout",
        type=float,
        default=float(env("EMS_GATEWAY_WAKE_TIMEOUT", 30)),
        help="seconds a request to a service at zero instances is held while it wakes "
        "(then 503 + Retry-After); 0 answers 503 at once",
    )
    p.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def admin_bind(args: argparse.Namespace) -> tuple[str, int]:
    """Where the admin endpoints listen: ``--admin-bind``, else loopback on the next port."""
    if args.admin_bind:
        host, _, port = args.admin_bind.rpartition(":")
        return host or "127.0.0.1", int(port)
    return "127.0.0.1", int(args.bind.rpartition(":")[2]) + 1


def reporter(gw: Gateway, store: RouteStore, stop: threading.Event) -> None:
    """Tell the control plane (through the store) what this gateway has applied: at once after
    a route change, when in-flight counts change (at most every REPORT_EVERY), and as a
    heartbeat every HEARTBEAT seconds. A store outage backs off (0.1 s doubling to 2 s)."""
    last, sent_at, backoff = None, 0.0, 0.0
    while not stop.is_set():
        gw.changed.wait(REPORT_EVERY)
        gw.changed.clear()
        try:
            state = (gw.generation, gw.inflight())
        except RuntimeError:  # the table changed under us; next tick
            continue
        now = time.monotonic()
        if gw.synced and (state != last or now - sent_at >= HEARTBEAT):
            try:
                store.report(gw.gateway_id, *state, counters=gw.counters())
                last, sent_at, gw.reported = state, now, True
                if backoff:
                    log.info("reporting to the route store again")
                backoff = 0.0
            except Exception as exc:  # a store outage must not stop the gateway
                if not backoff:
                    log.warning("cannot report to the route store (retrying): %s", exc)
                backoff = min(backoff * 2 or 0.1, 2.0)
                stop.wait(backoff)


def split_bind(bind: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (127.0.0.1) -> (host, port)."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT: a new gateway can bind the port while the old
    one still serves, so a restart (start new, then SIGTERM old) refuses no connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def take_backlog(loop, sock: socket.socket, factory) -> int:
    """Accept what the kernel already queued on ``sock`` (it would be reset on close)."""
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return n
        except OSError:
            return n
        conn.setblocking(False)
        loop.create_task(loop.connect_accepted_socket(factory, conn))
        n += 1


def malloc_trimmer():
    """glibc: large blocks from mmap (returned on free) and ``malloc_trim`` to give freed
    heap pages back after large bodies; a no-op elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (fixed: no dynamic growth)
        libc.mallopt(-1, 1 << 20)  # M_TRIM_THRESHOLD
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


async def wait_for_routes(gw: Gateway, routes: str) -> None:
    """Listen only with a route table: a restarted gateway answers 404 for nothing."""
    waited = 0.0
    while not gw.synced:
        await asyncio.sleep(0.01)
        waited += 0.01
        if waited >= 5.0:
            log.warning("still waiting for the first route table from %s", routes)
            waited = -25.0  # and again every 30 s


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    host, port = split_bind(args.bind)
    limits = Limits(
        max_url=args.max_url,
        max_header=args.max_header,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keepalive_timeout=args.keepalive_timeout,
        probe_after=args.probe_after,
        probe_timeout=args.probe_timeout,
    )
    gw = Gateway(
        domain=args.domain,
        max_body=args.max_body,
        upstream_timeout=args.upstream_timeout,
        gateway_id=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        limits=limits,
    )
    gw.loop = loop
    trim = malloc_trimmer()
    store = open_store(args.routes)
    gw.waker = Waker(gw, open_store(args.routes), args.wake_timeout)  # its own connection
    stop = threading.Event()

    def on_change(changes, generation, full) -> None:
        loop.call_soon_threadsafe(gw.apply, changes, generation, full)

    threads = [
        threading.Thread(target=store.watch, args=(on_change, stop), daemon=True, name="watch"),
        threading.Thread(target=reporter, args=(gw, store, stop), daemon=True, name="report"),
    ]
    for t in threads:
        t.start()
    await wait_for_routes(gw, args.routes)
    # Everything allocated so far lives as long as the process: keep it out of the cyclic
    # collector's passes, which otherwise walk it again and again under load.
    gc.collect()
    gc.freeze()

    def public() -> ClientConn:
        return ClientConn(gw)

    sock = listen(host, port)
    keep = sock.dup()  # still listening after the server closes: see take_backlog
    servers = [await loop.create_server(public, sock=sock, backlog=2048)]
    # the admin endpoints list every service: a listener of their own, loopback unless told;
    # SO_REUSEPORT like the public one, so the next gateway can bind it before this one stops
    a_host, a_port = admin_bind(args)
    a_sock = listen(a_host, a_port)
    servers.append(await loop.create_server(lambda: ClientConn(gw, admin=True), sock=a_sock))
    log.info(
        "gateway %s on http://%s (admin on %s:%s), routes from %s",
        gw.gateway_id,
        args.bind,
        a_host,
        a_port,
        args.routes,
    )
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    collect_at = 0.0
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), TICK)
        now = time.monotonic()
        gw.tick(now)
        if now >= collect_at:
            gw.collect()
            collect_at = now + 1.0
        if trim is not None and gw.big_bytes and not gw.client_inflight:
            gw.big_bytes = 0
            trim(0)
    # Stop accepting, take what the kernel queued for us, serve in-flight, then exit.
    gw.draining = True
    for server in servers:
        server.close()
    taken = take_backlog(loop, keep, public)
    keep.close()
    log.info("draining: stopped listening (%d queued connections taken)", taken)
    deadline = loop.time() + DRAIN_SECONDS
    while (gw.client_inflight or gw.clients) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        gw.tick()
    stop.set()
    with contextlib.suppress(Exception):
        store.forget(gw.gateway_id)
    log.info("gateway stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        import uvloop
    except ImportError:  # plain asyncio works, only slower
        return asyncio.run(serve(args))
    return uvloop.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
