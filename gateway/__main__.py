"""``python -m gateway``: run the gateway (configuration: flags or EMS_GATEWAY_*)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid

from gateway.app import Gateway
from gateway.protocol import ClientConn
from gateway.routes import RouteStore, open_store, store_url_from_env
from gateway.wake import Waker

log = logging.getLogger("gateway")
REPORT_EVERY = 0.05  # how often a changed generation / in-flight table is reported
HEARTBEAT = 2.0  # report at least this often (REPORT_TTL in gateway.routes is 15 s)
DRAIN_SECONDS = 30.0


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
        help="host:port for /metrics and /-/* only (unset: they are on --bind too)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=float,
        default=float(env("EMS_GATEWAY_KEEPALIVE_TIMEOUT", 75)),
        help="seconds an idle client connection stays open",
    )
    p.add_argument(
        "--wake-timeout",
        type=float,
        default=float(env("EMS_GATEWAY_WAKE_TIMEOUT", 30)),
        help="seconds a request to a service at zero instances is held while it wakes "
        "(then 503 + Retry-After); 0 answers 503 at once",
    )
    p.add_argument("--log-level", default=env("LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def reporter(gw: Gateway, store: RouteStore, stop: threading.Event) -> None:
    """Tell the control plane (through the store) what this gateway has applied: at once after
    a route change, when in-flight counts change (at most every REPORT_EVERY), and as a
    heartbeat every HEARTBEAT seconds."""
    last, sent_at = None, 0.0
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
            except Exception as exc:  # a store outage must not stop the gateway
                log.warning("cannot report to the route store: %s", exc)


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    host, _, port = args.bind.rpartition(":")
    gw = Gateway(
        domain=args.domain,
        max_body=args.max_body,
        upstream_timeout=args.upstream_timeout,
        gateway_id=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
    )
    gw.loop = loop
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
    servers = [
        await loop.create_server(
            lambda: ClientConn(gw), host or "127.0.0.1", int(port), reuse_address=True, backlog=2048
        )
    ]
    if args.admin_bind:
        gw.admin_separate = True
        a_host, _, a_port = args.admin_bind.rpartition(":")
        servers.append(
            await loop.create_server(
                lambda: ClientConn(gw, admin=True), a_host or "127.0.0.1", int(a_port)
            )
        )
    log.info("gateway %s on http://%s, routes from %s", gw.gateway_id, args.bind, args.routes)
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 1.0)
        gw.collect()
        idle_since = time.monotonic() - args.keepalive_timeout
        for conn in list(gw.clients):
            conn.close_if_idle(idle_since)
    for server in servers:
        server.close()  # stop accepting; let in-flight requests finish
    deadline = loop.time() + DRAIN_SECONDS
    while gw.client_inflight and loop.time() < deadline:
        await asyncio.sleep(0.05)
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
