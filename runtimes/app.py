"""TF-Serving's REST routes over :mod:`runtimes.http`, and where each request runs.

A request body up to :data:`INLINE_BODY_LIMIT` is parsed on the event loop (orjson, then
straight into NumPy arrays for tensor models). Then, cheapest first:

- a row request the batcher may merge goes to :class:`runtimes.batching.Batcher` (which runs a
  lone request inline when the model is idle and its calls are short);
- a call whose kind is known to be short (running mean under ``inline_max_s``), made while no
  other model request is being answered, runs inline on the loop: no thread hop at all;
- anything else (slow models, concurrent requests without batching, big bodies) runs parse,
  call and encode together in **one** hop to the worker pool sized from the CPU quota, so a
  slow request never blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

import orjson

from runtimes.batching import Batcher
from runtimes.errors import ApiError, BadRequest, NotFound, Unavailable
from runtimes.loaders.base import Model
from runtimes.loaders.tensor import outputs_to_rows
from runtimes.metrics import Metrics

if TYPE_CHECKING:
    from runtimes.http import HttpConn

log = logging.getLogger("runtimes.server")

ROUTE = re.compile(
    rb"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    rb"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$"
)
VERBS = ("predict", "classify", "regress")
METRICS_TYPE = Metrics.content_type.encode()
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# Bodies up to this size are parsed on the event loop (tens of microseconds); bigger ones are
# parsed in the worker pool so the loop never stalls.
INLINE_BODY_LIMIT = 256 * 1024
DEFAULT_INLINE_MS = 5.0
EWMA = 0.2  # weight of the newest call in the running mean of a kind of call's duration
# orjson refuses documents nested deeper than 1024 levels; a tensor has at most 64 dimensions
# (NumPy's limit), so the deepest valid request is far shallower: a RecursionError anywhere in
# handling one is the client's nesting, answered 400 like the parser's own refusal.
TOO_DEEP = (
    "the request JSON is nested too deeply: a tensor has at most 64 dimensions, "
    "and objects/arrays may nest at most 1024 levels"
)


@dataclass
class ServedModel:
    """What the server serves and where it is in its life (LOADING -> AVAILABLE)."""

    name: str
    version: str
    state: str = "LOADING"
    model: Model | None = None
    error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def status_body(served: ServedModel) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": served.version,
                "state": served.state,
                "status": {"error_code": "OK", "error_message": served.error},
            }
        ]
    }


class RuntimeApp:
    """Routes, metrics and the places a model call may run, around one served model version."""

    def __init__(
        self,
        served: ServedModel,
        pool: ThreadPoolExecutor,
        batcher: Batcher | None = None,
        inline_max_s: float = DEFAULT_INLINE_MS / 1000,
    ) -> None:
        self.served = served
        self.pool = pool
        self.batcher = batcher
        self.inline_max_s = inline_max_s
        self.metrics = Metrics()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[HttpConn] = set()
        self.draining = False
        self.busy = 0  # model requests being answered (inline, in the pool or the batcher)
        self._cost: dict[tuple[str, Any], float] = {}  # (verb, signature) -> mean seconds

    # ---- routing (on the event loop) ----
    def dispatch(self, conn: HttpConn, method: bytes, path: bytes, raw: bytes) -> None:
        """Answer one request through ``conn.respond`` (now, or later from a callback)."""
        start = perf_counter()
        if path == b"/metrics":
            if method in (b"GET", b"HEAD"):
                conn.respond(200, self.metrics.render(), METRICS_TYPE)
            else:
                conn.respond(405, error_body("/metrics needs GET"))
            return
        method_label, model_label = "other", "_unknown"
        match = ROUTE.match(path)
        try:
            if match is None:
                text = path.decode("utf-8", "replace")
                raise NotFound(f"Malformed request: {method.decode('latin-1')} {text}")
            name = match["name"].decode("utf-8", "replace")
            version = match["version"].decode("latin-1") if match["version"] else None
            self._resolve(name, version)
            model_label = name
            if match["verb"] is not None:
                verb = match["verb"].decode()
                if verb not in VERBS:
                    raise NotFound(f"Unknown verb: {verb} (expected one of {', '.join(VERBS)})")
                method_label = verb
                if method != b"POST":
                    raise ApiError(f":{verb} needs POST", 405)
                self._call_model(conn, verb, raw, start)
                return
            method_label = "metadata" if match["metadata"] else "status"
            if method != b"GET":
                raise ApiError(f"{method_label} needs GET", 405)
            status, body = 200, orjson.dumps(self._describe(bool(match["metadata"])))
        except ApiError as exc:
            status, body = exc.status, error_body(exc.message)
        self.metrics.observe(model_label, self.served.version, method_label, status, start)
        conn.respond(status, body)

    def _resolve(self, name: str, version: str | None) -> None:
        served = self.served
        if version is not None and not version.isdigit():
            raise BadRequest(f"Failed to convert version: {version} to numeric.")
        if name != served.name:
            spec = f"Latest({name})" if version is None else f"Specific({name}, {int(version)})"
            raise NotFound(f"Servable not found for request: {spec}")
        if version is not None and str(int(version)) != served.version:
            raise NotFound(f"Servable not found for request: Specific({name}, {int(version)})")

    def _describe(self, metadata: bool) -> dict[str, Any]:
        served = self.served
        if not metadata:
            return status_body(served)
        if served.model is None:
            raise Unavailable(f"model {served.name} version {served.version} is {served.state}")
        return {
            "model_spec": {"name": served.name, "signature_name": "", "version": served.version},
            "metadata": served.model.metadata(),
        }

    # ---- model calls ----
    def _call_model(self, conn: HttpConn, verb: str, raw: bytes, start: float) -> None:
        if self.served.state != "AVAILABLE":
            raise Unavailable(
                f"model {self.served.name} version {self.served.version} is {self.served.state}"
            )
        self.busy += 1
        self.metrics.in_flight.inc()
        if len(raw) > INLINE_BODY_LIMIT:
            self._to_pool(conn, verb, None, raw, start)
            return
        model = self.served.model
        assert model is not None
        try:
            body = self._parse(raw)
            if self.batcher is not None and verb == "predict":
                plan = model.batch_plan(body)  # type: ignore[attr-defined]
                if plan is not None:
                    signature, feeds, rows = plan
                    self.batcher.submit(
                        signature,
                        feeds,
                        lambda outputs, error: self._batched(conn, start, rows, outputs, error),
                    )
                    return
            key = (verb, body.get("signature_name"))
            cost = self._cost.get(key)
            if (
                self.busy == 1
                and cost is not None
                and cost <= self.inline_max_s
                and (self.batcher is None or self.batcher.idle())
            ):
                status, out = self._answer(verb, body, key)
                self._done(conn, start, verb, status, out)
                return
        except Exception as exc:
            status, out = self._failure(exc, verb)
            self._done(conn, start, verb, status, out)
            return
        self._to_pool(conn, verb, body, raw, start)

    def _to_pool(
        self, conn: HttpConn, verb: str, body: dict[str, Any] | None, raw: bytes, start: float
    ) -> None:
        loop = self.loop
        assert loop is not None
        future = self.pool.submit(self._call_model_sync, verb, body, raw)

        def back(done: Future) -> None:
            loop.call_soon_threadsafe(self._pool_done, conn, start, verb, done)

        future.add_done_callback(back)

    def _pool_done(self, conn: HttpConn, start: float, verb: str, done: Future) -> None:
        if done.cancelled():  # shutting down
            status, out = 503, error_body("the server is shutting down")
        else:
            status, out = done.result()  # _call_model_sync never raises
        self._done(conn, start, verb, status, out)

    def _batched(
        self,
        conn: HttpConn,
        start: float,
        rows: int,
        outputs: dict[str, Any] | None,
        error: BaseException | None,
    ) -> None:
        try:
            if error is not None:
                raise error
            assert outputs is not None
            result = {"predictions": outputs_to_rows(outputs, rows)}
            status, out = 200, orjson.dumps(result, option=DUMP_OPTIONS)
        except Exception as exc:
            status, out = self._failure(exc, "predict")
        self._done(conn, start, "predict", status, out)

    def _done(self, conn: HttpConn, start: float, verb: str, status: int, out: bytes) -> None:
        self.busy -= 1
        self.metrics.in_flight.dec()
        self.metrics.observe(self.served.name, self.served.version, verb, status, start)
        conn.respond(status, out)

    def _failure(self, exc: BaseException, verb: str) -> tuple[int, bytes]:
        if isinstance(exc, ApiError):
            return exc.status, error_body(exc.message)
        if isinstance(exc, RecursionError):
            return 400, error_body(TOO_DEEP)
        model = self.served.model
        runtime = model.runtime if model is not None else "?"
        log.error("%s failed", verb, exc_info=exc)  # a real fault inside the runtime: 500
        return 500, error_body(f"internal error in the {runtime} runtime: {exc}")

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc) or "recursion" in str(exc).lower():
                raise BadRequest(TOO_DEEP) from None
            raise BadRequest(f"malformed JSON in request body: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _answer(self, verb: str, body: dict[str, Any], key: tuple[str, Any]) -> tuple[int, bytes]:
        """Call the model and encode its answer; keeps the running mean of this kind of call."""
        model = self.served.model
        assert model is not None
        started = perf_counter()
        result = getattr(model, verb)(body)
        out = orjson.dumps(result, option=DUMP_OPTIONS)
        took = perf_counter() - started
        old = self._cost.get(key)
        self._cost[key] = took if old is None else old + EWMA * (took - old)
        return 200, out

    def _call_model_sync(
        self, verb: str, body: dict[str, Any] | None, raw: bytes
    ) -> tuple[int, bytes]:
        """In a worker thread: parse (if not yet), call and encode; map failures to statuses."""
        try:
            announce = self.batcher is not None and verb == "predict" and body is None
            if announce:
                with self.batcher.arrival():  # type: ignore[union-attr]
                    return 200, orjson.dumps(
                        self.served.model.predict(self._parse(raw)),  # type: ignore[union-attr]
                        option=DUMP_OPTIONS,
                    )
            if body is None:
                body = self._parse(raw)
                return 200, orjson.dumps(
                    getattr(self.served.model, verb)(body), option=DUMP_OPTIONS
                )
            return self._answer(verb, body, (verb, body.get("signature_name")))
        except Exception as exc:
            return self._failure(exc, verb)
