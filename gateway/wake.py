"""Scale to zero, the gateway's half: hold requests to a sleeping service and wake it.

A route with ``"wake": true`` belongs to an automatic service whose minimum is 0. When such a
route has no healthy instance, the gateway does not answer 503 at once: it

1. writes a **wake request** for the service to the route store (``RouteStore.wake``; again
   every second while requests are held) — the control plane's wake task reads it and scales
   the service to one instance through its own (audited) service layer;
2. **holds** the request (no task, no thread: the connection simply waits) until a route with a
   healthy instance for the service is applied, then forwards it as any other request;
3. answers ``503`` with ``Retry-After`` when no instance is ready within the hold bound
   (``EMS_GATEWAY_WAKE_TIMEOUT``, default 30 s).

The wake request is written from a worker thread (store calls block); the hold is bookkeeping
on the event loop. No Django here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("gateway")
WAKE_EVERY = 1.0  # seconds between two wake requests for the same service
RETRY_AFTER = b"5"


class Waker:
    """Held requests per service; the gateway calls :meth:`routes_applied` after every change."""

    def __init__(self, gw: Any, store: Any, timeout: float) -> None:
        self.gw = gw
        self.store = store
        self.timeout = timeout
        self.held: dict[str, list[tuple[Any, tuple, float, Any]]] = {}
        self.asked: dict[str, float] = {}
        self.woken = 0  # wake requests written (for /metrics)

    def hold(self, conn: Any, req: tuple) -> bool:
        """Hold ``req`` of ``conn`` until its service has a healthy instance; False when holding
        is off (timeout 0), so the caller answers 503 as before."""
        if self.timeout <= 0:
            return False
        sid = conn.sid
        loop = self.gw.loop
        timer = loop.call_later(self.timeout, self._expire, sid, conn)
        self.held.setdefault(sid, []).append((conn, req, conn.started, timer))
        if sid not in self.asked:
            self._tick(sid)
        return True

    def _tick(self, sid: str) -> None:
        """Write the wake request now and again every WAKE_EVERY while requests are held, so
        a request lost or cleared by the control plane at the wrong moment is asked again."""
        if not self.held.get(sid):
            self.asked.pop(sid, None)
            return
        self.asked[sid] = time.monotonic()
        self.gw.loop.run_in_executor(None, self._ask, sid)
        self.gw.loop.call_later(WAKE_EVERY, self._tick, sid)

    def _ask(self, sid: str) -> None:
        try:
            self.store.wake(sid)
            self.woken += 1
        except Exception as exc:  # the store is down: asked again in a second; the hold bound
            log.warning("cannot write the wake request of %s: %s", sid, exc)  # still answers

    def routes_applied(self) -> None:
        """Resume the held requests of every service that now has a healthy instance (or no
        longer exists / no longer sleeps: those get the normal answer, 404 or 503)."""
        for sid in list(self.held):
            svc = self.gw.services.get(sid)
            if svc is not None and svc.wake and not svc.healthy:
                continue
            waiting = self.held.pop(sid)  # the _tick chain of sid ends by itself
            for conn, req, started, timer in waiting:
                timer.cancel()
                self._resume(conn, req, started)

    def _resume(self, conn: Any, req: tuple, started: float) -> None:
        if conn.transport is None or not conn.busy:  # the caller left meanwhile
            return
        conn.busy = False
        self.gw.client_inflight -= 1
        conn.begin(req)
        if conn.busy:
            conn.started = started  # the latency the caller saw includes the wake-up

    def _expire(self, sid: str, conn: Any) -> None:
        waiting = self.held.get(sid, [])
        for item in waiting:
            if item[0] is conn:
                waiting.remove(item)
                break
        else:
            return
        if not waiting:
            self.held.pop(sid, None)
        if conn.transport is None or not conn.busy:
            return
        message = (
            f"service {sid} is waking up from zero instances and was not ready within "
            f"{self.timeout:g}s; retry"
        )
        from gateway.protocol import JSON

        conn.reply(503, (*JSON, (b"retry-after", RETRY_AFTER)), _error(message))

    def count(self) -> int:
        return sum(len(v) for v in self.held.values())


def _error(message: str) -> bytes:
    import json

    return json.dumps({"error": message}).encode()
