"""Routes: what the control plane tells the gateway, and how it learns that a change landed.

A route record (one per service) is plain JSON::

    {"service_id": "ems-7f3k2p9q", "tenant_id": 12, "generation": 41, "auth": true,
     "token_sha256": ["<64 hex>", ...],
     "token_not_after": {"<64 hex>": 1767225600.0},      # optional: expiry of a hash
     "instances": [{"id": "i-1", "url": "http://10.0.0.5:8501", "state": "healthy"}]}

``generation`` is assigned by the store on every ``publish`` / ``delete`` from one counter per
store, so it grows monotonically across all services. Every gateway reports the generation it
has applied (plus its in-flight requests per instance) back through the store; the control
plane waits on that with :meth:`RouteStore.wait_applied` and :meth:`RouteStore.wait_drained`.

Two stores, chosen by URL (:func:`open_store`):

* ``redis://…`` — one hash ``<prefix>routes`` (field per service, value the JSON record), the
  counter ``<prefix>generation``, notifications on channel ``<prefix>changes`` ("<gen> <id>").
  Publish/delete are one Lua script, so the counter, the record and the notification change
  together and notifications arrive in generation order. A watcher resyncs fully on
  (re)connect and every ``RESYNC_SECONDS``. Gateway reports: key
  ``<prefix>gateway:<id>`` each (expiring after ``REPORT_TTL``), ids in set ``<prefix>gateway-ids``.
* ``file:///path/routes.json`` — the embedded default: ``{"generation": N, "routes": {…}}``
  written to a temporary file and ``os.replace``-d under an ``flock``; watchers poll
  ``stat``. Gateway reports: ``<path>.gateways/<gateway id>.json`` (expired by mtime).

No Django here: the gateway imports this module in a process without settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

Route = dict[str, Any]
# on_change(changes, generation, full): changes maps service id -> route, or None when deleted;
# full=True means ``changes`` is the whole table (services missing from it are gone).
OnChange = Callable[[dict[str, Route | None], int, bool], None]

INSTANCE_STATES = ("healthy", "starting", "draining", "unhealthy", "stopped")
REPORT_TTL = 15.0  # a gateway report older than this is a gateway that is gone
RESYNC_SECONDS = 30.0
POLL_SECONDS = 0.05


class RouteError(ValueError):
    """A route record that does not have the agreed shape."""


def make_route(
    *,
    service_id: str,
    tenant_id: int | str,
    auth: bool,
    token_sha256: Iterable[str] = (),
    token_not_after: dict[str, float] | None = None,
    instances: Iterable[dict[str, str]] = (),
    refuse: str = "",
    wake: bool = False,
) -> Route:
    """A validated route record (``generation`` is filled in by ``publish``).

    ``refuse``: a message; when set, the gateway answers every call with 403 ``{"error":
    refuse}`` and proxies nothing (a suspended tenant's services). ``wake``: the service
    scales to zero, so a gateway holds its requests and wakes it (gateway/wake.py)."""
    route: Route = {
        "service_id": service_id,
        "tenant_id": tenant_id,
        "generation": 0,
        "auth": bool(auth),
        "token_sha256": list(token_sha256),
        "instances": [dict(i) for i in instances],
    }
    if token_not_after:
        route["token_not_after"] = dict(token_not_after)
    if refuse:
        route["refuse"] = refuse
    if wake:
        route["wake"] = True
    validate_route(route)
    return route


def validate_route(route: Route) -> None:
    sid = route.get("service_id")
    if not isinstance(sid, str) or not sid or "/" in sid or "." in sid:
        raise RouteError(f"bad service_id {sid!r}")
    for h in route.get("token_sha256", []):
        if not (isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h)):
            raise RouteError("token_sha256 holds 64 lowercase hex digits per token")
    if not isinstance(route.get("refuse", ""), str):
        raise RouteError("refuse is a message (a string)")
    if route.get("auth") and not route.get("token_sha256"):
        raise RouteError("auth is on but the route has no token")
    for inst in route.get("instances", []):
        if not inst.get("id") or not str(inst.get("url", "")).startswith("http://"):
            raise RouteError(f"instance needs an id and an http:// url: {inst!r}")
        if inst.get("state") not in INSTANCE_STATES:
            raise RouteError(f"instance state must be one of {INSTANCE_STATES}: {inst!r}")


class RouteStore:
    """The interface both stores implement; the control plane only uses these methods."""

    def publish(self, route: Route) -> int:
        """Store ``route`` (replacing the service's previous one); returns its generation."""
        raise NotImplementedError

    def delete(self, service_id: str) -> int:
        """Remove a service's route; returns the generation of the removal."""
        raise NotImplementedError

    def get(self, service_id: str) -> Route | None:
        raise NotImplementedError

    def all(self) -> dict[str, Route]:
        raise NotImplementedError

    def publish_many(self, changes: Iterable[tuple[str, int, Route | None]]) -> int:
        """Many publishes and deletes at once: ``(service id, expected generation, route or
        None to delete)``. Each is applied only when the service's stored record still has the
        expected generation (0: no record), so a route published by someone else after the
        caller read the store is never overwritten with an older one (a delete of a record that
        is not there is skipped). Each applied change gets
        its own generation and notification, in order, as ``publish`` would give it. Returns
        the number applied."""
        raise NotImplementedError

    def generation(self) -> int:
        """The store's current generation (the last publish or delete)."""
        raise NotImplementedError

    # --- the gateway side ---
    def watch(self, on_change: OnChange, stop: threading.Event) -> None:
        """Block (in a thread) calling ``on_change`` for every change until ``stop`` is set."""
        raise NotImplementedError

    def report(
        self,
        gateway_id: str,
        generation: int,
        inflight: dict[str, int],
        counters: dict[str, Any] | None = None,
    ) -> None:
        """A gateway's heartbeat: the generation it applied, its in-flight per instance and
        (``counters``) its cumulative request counters per service (``gateway.app.Stats``),
        which the control plane's metrics poller turns into rates and percentiles."""
        raise NotImplementedError

    # --- scale to zero: a gateway asks the control plane to wake a sleeping service ---
    def wake(self, service_id: str) -> None:
        """Record a wake request for ``service_id`` (the time of the latest one is kept)."""
        raise NotImplementedError

    def wake_requests(self) -> dict[str, float]:
        """Pending wake requests: service id -> Unix time of the latest."""
        raise NotImplementedError

    def clear_wake(self, service_id: str, before: float) -> None:
        """Drop the service's wake request if it is not newer than ``before``."""
        raise NotImplementedError

    def forget(self, gateway_id: str) -> None:
        """A gateway that stops cleanly removes its report."""
        raise NotImplementedError

    def _reports(self) -> dict[str, dict[str, Any]]:
        """The reports that have not expired (older ones are removed on the way)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    # --- what the control plane waits on ---
    def gateways(self) -> dict[str, dict[str, Any]]:
        """Live gateways (reported within ``REPORT_TTL``): id -> {generation, inflight, at}.

        A report expires ``REPORT_TTL`` after it was written (Redis: the key's TTL, so clocks
        of other hosts do not matter; file: the file's mtime), so a gateway killed without
        ``forget`` drops out by itself and no wait blocks on it for longer than that."""
        return self._reports()

    def wait_applied(self, generation: int, timeout: float = 5.0) -> bool:
        """Wait until every live gateway has applied ``generation`` (or a later one).

        True when they have (also when no gateway is live: nobody routes by the old table),
        False on timeout.
        """
        return self._wait(lambda g: g["generation"] >= generation, timeout)

    def wait_drained(
        self, instance_ids: Iterable[str], generation: int, timeout: float = 30.0
    ) -> bool:
        """Wait until every live gateway has applied ``generation`` (the one that took the
        instances out of the route) and has no request in flight to any of them."""
        ids = set(instance_ids)

        def done(g: dict[str, Any]) -> bool:
            inflight = g.get("inflight", {})
            return g["generation"] >= generation and not any(inflight.get(i) for i in ids)

        return self._wait(done, timeout)

    def _wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if all(pred(g) for g in self.gateways().values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _stamp(route: Route) -> str:
    """Validate and serialise with ``"generation":0``; sorted keys put it right after
    ``"auth"`` (a boolean), so its first occurrence is the field the Lua script rewrites."""
    validate_route(route)
    body = dict(route, generation=0)
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------- file store


class FileRouteStore(RouteStore):
    """One JSON file replaced atomically; writers serialise on an ``flock``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.reports_dir = self.path.with_name(self.path.name + ".gateways")

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return {"generation": 0, "routes": {}}

    def _write_json(self, path: Path, doc: Any) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _change(self, service_id: str, route: Route | None) -> int:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = self._read()
            gen = int(doc.get("generation", 0)) + 1
            doc["generation"] = gen
            routes = doc.setdefault("routes", {})
            if route is None:
                routes.pop(service_id, None)
            else:
                routes[service_id] = dict(json.loads(_stamp(route)), generation=gen)
            self._write_json(self.path, doc)
            return gen

    def publish(self, route: Route) -> int:
        return self._change(route["service_id"], route)

    def delete(self, service_id: str) -> int:
        return self._change(service_id, None)

    def publish_many(self, changes: Iterable[tuple[str, int, Route | None]]) -> int:
        items = [(sid, expected, None if r is None else _stamp(r)) for sid, expected, r in changes]
        if not items:
            return 0
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = self._read()
            gen = int(doc.get("generation", 0))
            routes = doc.setdefault("routes", {})
            applied = 0
            for sid, expected, body in items:
                have = routes.get(sid)
                if int((have or {}).get("generation", 0)) != expected:
                    continue
                if body is None and have is None:
                    continue  # nothing to delete
                gen += 1
                applied += 1
                if body is None:
                    routes.pop(sid, None)
                else:
                    routes[sid] = dict(json.loads(body), generation=gen)
            if applied:
                doc["generation"] = gen
                self._write_json(self.path, doc)
            return applied

    def get(self, service_id: str) -> Route | None:
        return self._read()["routes"].get(service_id)

    def all(self) -> dict[str, Route]:
        return self._read()["routes"]

    def generation(self) -> int:
        return int(self._read().get("generation", 0))

    def watch(self, on_change: OnChange, stop: threading.Event) -> None:
        seen: tuple[int, int, int] | None = None
        while not stop.is_set():
            try:
                st = os.stat(self.path)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                key = (0, 0, 0)
            if key != seen:
                doc = self._read()  # os.replace: a reader sees the old file or the new one
                seen = key
                on_change(dict(doc.get("routes", {})), int(doc.get("generation", 0)), True)
            stop.wait(POLL_SECONDS)

    def report(self, gateway_id, generation, inflight, counters=None) -> None:
        self.reports_dir.mkdir(exist_ok=True)
        doc = {"generation": generation, "inflight": inflight, "at": time.time()}
        if counters is not None:
            doc["counters"] = counters
        self._write_json(self.reports_dir / f"{gateway_id}.json", doc)

    def _wake_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".wake")

    def wake(self, service_id: str) -> None:
        folder = self._wake_dir()
        folder.mkdir(exist_ok=True)
        self._write_json(folder / f"{service_id}.json", {"at": time.time()})

    def wake_requests(self) -> dict[str, float]:
        folder, out = self._wake_dir(), {}
        for p in folder.glob("*.json") if folder.exists() else ():
            with contextlib.suppress(FileNotFoundError, ValueError):
                out[p.stem] = float(json.loads(p.read_bytes())["at"])
        return out

    def clear_wake(self, service_id: str, before: float) -> None:
        path = self._wake_dir() / f"{service_id}.json"
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            if float(json.loads(path.read_bytes())["at"]) <= before:
                os.unlink(path)

    def forget(self, gateway_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.reports_dir / f"{gateway_id}.json")

    def _reports(self) -> dict[str, dict[str, Any]]:
        out, now = {}, time.time()
        for p in self.reports_dir.glob("*.json") if self.reports_dir.exists() else ():
            with contextlib.suppress(FileNotFoundError, ValueError):
                if now - p.stat().st_mtime >= REPORT_TTL:  # expired: the gateway is gone
                    p.unlink()
                    continue
                out[p.stem] = json.loads(p.read_bytes())
        return out


# --------------------------------------------------------------------------- Redis store

# KEYS: routes hash, generation counter; ARGV: channel, service id, JSON with "generation":0
# (or "" to delete). The generation is spliced in here so it is assigned atomically.
_CHANGE_LUA = """
local gen = redis.call('INCR', KEYS[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  local doc = string.gsub(ARGV[3], '"generation":0', '"generation":' .. gen, 1)
  redis.call('HSET', KEYS[1], ARGV[2], doc)
end
redis.call('PUBLISH', ARGV[1], gen .. ' ' .. ARGV[2])
return gen
"""


# The batch of ``publish_many``: ARGV[1] the channel, then (service id, expected generation,
# JSON with "generation":0 or "" to delete) per change; each applied only when the stored
# record's generation is the expected one (0: none). Returns how many were applied.
_CHANGE_MANY_LUA = """
local applied = 0
for i = 2, #ARGV, 3 do
  local sid, expected, doc = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], sid)
  local have = 0
  if current then have = tonumber(string.match(current, '"generation":(%d+)')) or -1 end
  if have == expected and (doc ~= '' or current) then
    local gen = redis.call('INCR', KEYS[2])
    if doc == '' then
      redis.call('HDEL', KEYS[1], sid)
    else
      doc = string.gsub(doc, '"generation":0', '"generation":' .. gen, 1)
      redis.call('HSET', KEYS[1], sid, doc)
    end
    redis.call('PUBLISH', ARGV[1], gen .. ' ' .. sid)
    applied = applied + 1
  end
end
return applied
"""
MANY_CHUNK = 500  # changes per script call (Redis runs a script alone: keep each one short)


class RedisRouteStore(RouteStore):
    """Routes in Redis, change notifications over pub/sub (see the module docstring)."""

    def __init__(self, url: str, prefix: str = "ems:routes:") -> None:
        import redis  # only this store needs the client

        self._redis_mod = redis
        self.url = url
        self.prefix = prefix
        self.k_routes = prefix + "routes"
        self.k_gen = prefix + "generation"
        self.k_channel = prefix + "changes"
        self.k_reports = prefix + "gateway:"  # + id: one key per report, expiring
        self.k_report_ids = prefix + "gateway-ids"  # the ids that may have a report
        self.k_wake = prefix + "wake"
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._change = self.r.register_script(_CHANGE_LUA)
        self._change_many = self.r.register_script(_CHANGE_MANY_LUA)

    def publish(self, route: Route) -> int:
        doc = _stamp(route)
        keys = [self.k_routes, self.k_gen]
        return int(self._change(keys=keys, args=[self.k_channel, route["service_id"], doc]))

    def delete(self, service_id: str) -> int:
        keys = [self.k_routes, self.k_gen]
        return int(self._change(keys=keys, args=[self.k_channel, service_id, ""]))

    def publish_many(self, changes: Iterable[tuple[str, int, Route | None]]) -> int:
        items = [(sid, expected, "" if r is None else _stamp(r)) for sid, expected, r in changes]
        if not items:
            return 0
        keys = [self.k_routes, self.k_gen]
        pipe = self.r.pipeline(transaction=False)  # every chunk in one round trip
        for start in range(0, len(items), MANY_CHUNK):
            args: list[Any] = [self.k_channel]
            for sid, expected, body in items[start : start + MANY_CHUNK]:
                args += [sid, int(expected), body]
            self._change_many(keys=keys, args=args, client=pipe)
        return sum(int(n) for n in pipe.execute())

    def get(self, service_id: str) -> Route | None:
        raw = self.r.hget(self.k_routes, service_id)
        return None if raw is None else json.loads(raw)

    def all(self) -> dict[str, Route]:
        return self._snapshot()[0]

    def generation(self) -> int:
        return int(self.r.get(self.k_gen) or 0)

    def _snapshot(self, client: Any = None) -> tuple[dict[str, Route], int]:
        pipe = (client or self.r).pipeline(transaction=True)
        pipe.hgetall(self.k_routes)
        pipe.get(self.k_gen)
        raw, gen = pipe.execute()
        routes = {k.decode(): json.loads(v) for k, v in raw.items()}
        return routes, int(gen or 0)

    def watch(self, on_change: OnChange, stop: threading.Event) -> None:
        errors = self._redis_mod.exceptions.RedisError, OSError
        backoff = 0.1
        while not stop.is_set():
            client = self._redis_mod.Redis.from_url(
                self.url,
                socket_timeout=RESYNC_SECONDS + 5,
                socket_connect_timeout=5,
                client_name=f"ems-routes-watch:{self.prefix}",  # findable in CLIENT LIST
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.k_channel)  # subscribe first, then snapshot: no gap
                routes, applied = self._snapshot(client)
                on_change(routes, applied, True)
                backoff = 0.1
                resync_at = time.monotonic() + RESYNC_SECONDS
                while not stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None:
                        gen_s, _, sid = msg["data"].decode().partition(" ")
                        gen = int(gen_s)
                        if gen > applied:
                            raw = client.hget(self.k_routes, sid)
                            on_change({sid: None if raw is None else json.loads(raw)}, gen, False)
                            applied = gen
                    if time.monotonic() >= resync_at:
                        routes, applied = self._snapshot(client)
                        on_change(routes, applied, True)
                        resync_at = time.monotonic() + RESYNC_SECONDS
            except errors:
                stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(*errors):
                    pubsub.close()
                    client.close()

    def report(self, gateway_id, generation, inflight, counters=None) -> None:
        doc = {"generation": generation, "inflight": inflight, "at": time.time()}
        if counters is not None:
            doc["counters"] = counters
        pipe = self.r.pipeline(transaction=False)
        raw = json.dumps(doc, separators=(",", ":"))
        pipe.set(self.k_reports + gateway_id, raw, px=int(REPORT_TTL * 1000))
        pipe.sadd(self.k_report_ids, gateway_id)
        pipe.execute()

    def wake(self, service_id: str) -> None:
        self.r.hset(self.k_wake, service_id, repr(time.time()))

    def wake_requests(self) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.r.hgetall(self.k_wake).items()}

    def clear_wake(self, service_id: str, before: float) -> None:
        raw = self.r.hget(self.k_wake, service_id)
        if raw is not None and float(raw) <= before:
            self.r.hdel(self.k_wake, service_id)

    def forget(self, gateway_id: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(self.k_reports + gateway_id)
        pipe.srem(self.k_report_ids, gateway_id)
        pipe.execute()

    def _reports(self) -> dict[str, dict[str, Any]]:
        ids = sorted(i.decode() for i in self.r.smembers(self.k_report_ids))
        if not ids:
            return {}
        docs = self.r.mget([self.k_reports + i for i in ids])
        out, gone = {}, []
        for gid, raw in zip(ids, docs, strict=True):
            if raw is None:  # the key expired: a gateway that stopped reporting
                gone.append(gid)
            else:
                out[gid] = json.loads(raw)
        if gone:
            self.r.srem(self.k_report_ids, *gone)
        return out

    def close(self) -> None:
        self.r.close()


def store_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """Where routes live: EMS_GATEWAY_ROUTES, else REDIS_URL, else a file under EMS_DATA_DIR.

    The gateway and the control plane both call this, so they agree without configuration.
    """
    env = os.environ if environ is None else environ
    if env.get("EMS_GATEWAY_ROUTES"):
        return env["EMS_GATEWAY_ROUTES"]
    if env.get("REDIS_URL"):
        return env["REDIS_URL"]
    data_dir = os.path.abspath(env.get("EMS_DATA_DIR") or "./var")
    return "file://" + os.path.join(data_dir, "routes.json")


def open_store(url: str) -> RouteStore:
    """``redis://host:port/db[?prefix=…]`` or ``file:///abs/path.json`` (or a bare path)."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        query = parse_qsl(parts.query)
        prefix = dict(query).get("prefix", "ems:routes:")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        return RedisRouteStore(urlunsplit(parts._replace(query=rest)), prefix=prefix)
    if parts.scheme == "file":
        return FileRouteStore(unquote(parts.path))
    if parts.scheme == "":
        return FileRouteStore(url)
    raise ValueError(f"unknown route store {url!r}: use redis://… or file:///…")
