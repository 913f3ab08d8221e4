"""The HTTP side of the runtime server: TF-Serving's REST routes on aiohttp.

The event loop only parses paths and moves bytes; JSON decoding, the model call and JSON
encoding run together in a thread pool sized from the CPU quota, so one slow request never
blocks the loop and the hop to a worker thread is paid once per request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from runtimes.batching import Batcher
from runtimes.errors import ApiError, BadRequest, NotFound, Unavailable
from runtimes.loaders.base import Model
from runtimes.loaders.tensor import outputs_to_rows
from runtimes.metrics import Metrics

log = logging.getLogger("runtimes.server")

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$"
)
VERBS = ("predict", "classify", "regress")
JSON = "application/json"
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# Batched row requests up to this size are parsed and answered on the event loop (a few tens
# of microseconds); bigger ones go through the worker pool so the loop never stalls.
INLINE_BODY_LIMIT = 256 * 1024
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
    """Routes, metrics and the worker pool around one served model version."""

    def __init__(
        self, served: ServedModel, pool: ThreadPoolExecutor, batcher: Batcher | None = None
    ) -> None:
        self.served = served
        self.pool = pool
        self.batcher = batcher
        self.metrics = Metrics()

    def build(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/v1/models/{tail:.*}", self.handle)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": Metrics.content_type}
        )

    def _resolve(self, name: str, version: str | None) -> None:
        served = self.served
        if version is not None and not version.isdigit():
            raise BadRequest(f"Failed to convert version: {version} to numeric.")
        if name != served.name:
            spec = f"Latest({name})" if version is None else f"Specific({name}, {int(version)})"
            raise NotFound(f"Servable not found for request: {spec}")
        if version is not None and str(int(version)) != served.version:
            raise NotFound(f"Servable not found for request: Specific({name}, {int(version)})")

    async def handle(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        method_label, model_label = "other", "_unknown"
        match = ROUTE.match(request.path)
        try:
            if match is None:
                raise NotFound(f"Malformed request: {request.method} {request.path}")
            name, version = match["name"], match["version"]
            verb, metadata = match["verb"], match["metadata"]
            self._resolve(name, version)
            model_label = name
            if verb is not None:
                if verb not in VERBS:
                    raise NotFound(f"Unknown verb: {verb} (expected one of {', '.join(VERBS)})")
                method_label = verb
                if request.method != "POST":
                    raise ApiError(f":{verb} needs POST", 405)
                status, body = await self._call_model(verb, await request.read())
            else:
                method_label = "metadata" if metadata else "status"
                if request.method != "GET":
                    raise ApiError(f"{method_label} needs GET", 405)
                status, body = 200, orjson.dumps(self._describe(bool(metadata)))
        except ApiError as exc:
            status, body = exc.status, error_body(exc.message)
        self.metrics.observe(
            model_label, self.served.version, method_label, status, time.perf_counter() - start
        )
        return web.Response(status=status, body=body, content_type=JSON)

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

    async def _call_model(self, verb: str, raw: bytes) -> tuple[int, bytes]:
        if self.served.state != "AVAILABLE":
            raise Unavailable(
                f"model {self.served.name} version {self.served.version} is {self.served.state}"
            )
        self.metrics.in_flight.inc()
        try:
            if self.batcher is not None and verb == "predict" and len(raw) <= INLINE_BODY_LIMIT:
                answer = await self._predict_batched(raw)
                if answer is not None:
                    return answer
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, self._call_model_sync, verb, raw)
        finally:
            self.metrics.in_flight.dec()

    async def _predict_batched(self, raw: bytes) -> tuple[int, bytes] | None:
        """A small row request, parsed on the loop and merged by the batcher; None when it is
        not batchable (columnar, a signature without a batch dimension)."""
        model = self.served.model
        assert model is not None and self.batcher is not None
        try:
            body = self._parse(raw)
            plan = model.batch_plan(body)  # type: ignore[attr-defined]
            if plan is None:
                return None
            signature, feeds, rows = plan
            outputs = await self.batcher.submit(signature, feeds)
            result = {"predictions": outputs_to_rows(outputs, rows)}
            return 200, orjson.dumps(result, option=DUMP_OPTIONS)
        except ApiError as exc:
            return exc.status, error_body(exc.message)
        except RecursionError:
            return 400, error_body(TOO_DEEP)
        except Exception as exc:  # a real fault inside the runtime: log it, answer 500
            log.exception("predict failed")
            return 500, error_body(f"internal error in the {model.runtime} runtime: {exc}")

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

    def _call_model_sync(self, verb: str, raw: bytes) -> tuple[int, bytes]:
        """Parse, call and encode in one worker-thread hop; map failures to statuses."""
        model = self.served.model
        assert model is not None
        try:
            body = self._parse(raw)
            if self.batcher is not None and verb == "predict":
                with self.batcher.arrival():
                    result = model.predict(body)
            else:
                result = getattr(model, verb)(body)
            return 200, orjson.dumps(result, option=DUMP_OPTIONS)
        except ApiError as exc:
            return exc.status, error_body(exc.message)
        except RecursionError:
            return 400, error_body(TOO_DEEP)
        except Exception as exc:  # a real fault inside the runtime: log it, answer 500
            log.exception("%s failed", verb)
            return 500, error_body(f"internal error in the {model.runtime} runtime: {exc}")
