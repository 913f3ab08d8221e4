"""The invoke page: the service's gateway address, its token (revealed on click, audited), the
curl line, and a console that sends a request through the gateway and shows the answer and its
latency. The console is a server-side proxy (no CORS): it calls only
``EMS_GATEWAY_URL/<service id>/v1/models/m…`` with the service's own token."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

from accounts import authz, throttles
from accounts.door import page, page_object, require_actor
from gateway.tokens import decrypt
from portal import jsonlimits
from serving import access, selectors

CONSOLE_MAX_BODY = 1 << 20
CONSOLE_TIMEOUT = 30.0
# A string input is most often an encoded image: the sample sends a tiny grey JPEG (8 × 8), which
# an image model decodes and resizes like any other, where an empty string is a 400.
SAMPLE_JPEG_B64 = (
    "/9j/4AAQSkZJRgABAQEBLAEsAAD/2wBDAAoHBwgHBgoICAgLCgoLDhgQDg0NDh0VFhEYIx8lJCIfIiEmKzcvJik0KSEi"
    "MEExNDk7Pj4+JS5ESUM8SDc9Pjv/2wBDAQoLCw4NDhwQEBw7KCIoOzs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7"
    "Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozv/wAARCAAIAAgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcI"
    "CQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRol"
    "JicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ip"
    "qrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAA"
    "AAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLR"
    "ChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaX"
    "mJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEA"
    "PwAooooA/9k="
)
# A sample never grows past this many numbers (a shape that large gets the first dimension's
# elements only up to it, and the console's answer then says what the model wants).
SAMPLE_MAX_ELEMENTS = 1 << 20
DTYPE_ZERO = {
    "DT_STRING": {"b64": SAMPLE_JPEG_B64},
    "DT_BOOL": False,
    "DT_FLOAT": 0.0,
    "DT_DOUBLE": 0.0,
    "DT_HALF": 0.0,
}


def _service(request, service_id: str):
    """The service named in the URL among those the actor may see, checked for the page's
    action (``accounts.door``)."""
    return page_object(
        request,
        selectors.services(actor=require_actor(request), action="ems:DescribeService"),
        service_id=service_id,
    )


def _value(dtype: str, dims: list[int]):
    """Zeros of the signature's exact shape (unknown dimensions: 1), so the sample is a request
    the model accepts; capped at SAMPLE_MAX_ELEMENTS numbers."""
    if not dims:
        return DTYPE_ZERO.get(dtype, 0)
    size = dims[0] if dims[0] > 0 else 1
    inner = 1
    for d in dims[1:]:
        inner *= d if d > 0 else 1
    size = max(1, min(size, SAMPLE_MAX_ELEMENTS // max(inner, 1)))
    return [_value(dtype, dims[1:]) for _ in range(size)]


def sample_body(metadata: dict) -> dict:
    """A predict body in row form from TF-Serving metadata: one instance of zeros (empty
    ``b64`` for strings) per the serving signature's input shapes (batch dimension dropped)."""
    signatures = (metadata.get("metadata") or {}).get("signature_def") or {}
    signatures = signatures.get("signature_def", signatures)
    signature = signatures.get("serving_default") or next(iter(signatures.values()), {})
    inputs = signature.get("inputs") or {}
    row = {}
    for name, spec in inputs.items():
        dims = [int(d.get("size", -1)) for d in (spec.get("tensor_shape") or {}).get("dim", [])]
        row[name] = _value(spec.get("dtype", "DT_FLOAT"), dims[1:])
    if len(row) == 1:
        return {"instances": [next(iter(row.values()))]}
    return {"instances": [row]}


@page("GET", actions="ems:DescribeService", object=True)
def invoke_page(request, service_id: str):
    actor = require_actor(request)
    service = _service(request, service_id)
    context = {
        "service": service,
        **access.addresses(service),
        "curl": access.curl_line(service),
        "may_see_token": authz.is_allowed(actor, "ems:DescribeServiceToken", service),
    }
    return render(request, "serving/service_invoke.html", context)


@page("POST", actions="ems:DescribeServiceToken", object=True)
def invoke_token(request, service_id: str):
    """The token in clear, for the page's "reveal" button (audited by the service)."""
    actor = require_actor(request)
    service = _service(request, service_id)
    throttles.limit(request, "sensitive", account=throttles.account_of(request))
    token = access.service_token_reveal(actor=actor, service=service)
    return JsonResponse({"token": token, "curl": access.curl_line(service, token)})


def _gateway_call(service, op: str, body: bytes | None) -> dict:
    base = f"{settings.EMS_GATEWAY_URL.rstrip('/')}/{service.service_id}/v1/models/m"
    url = f"{base}/metadata" if op == "metadata" else f"{base}:predict"
    headers = {"Content-Type": "application/json"}
    if service.auth_enabled:
        token = access.current_token(service)
        if token is not None:
            headers["x-Auth-Token"] = decrypt(token.secret, settings.EMS_SECRETS_KEY)
    method = "POST" if op == "predict" else "GET"
    # the URL is EMS_GATEWAY_URL (settings accept http/https only) + a service id from the db
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=CONSOLE_TIMEOUT) as answer:  # noqa: S310
            status, raw = answer.status, answer.read(CONSOLE_MAX_BODY)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(CONSOLE_MAX_BODY)
    except (OSError, ValueError) as exc:
        return {"status": 0, "latency_ms": None, "body": {"error": f"gateway unreachable: {exc}"}}
    latency = (time.perf_counter() - started) * 1000.0
    try:
        parsed = jsonlimits.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return {"status": status, "latency_ms": round(latency, 2), "body": parsed}


@page("POST", actions="ems:DescribeServiceToken", object=True)
def invoke_console(request, service_id: str):
    """``op=metadata``: the model's metadata and a sample body; ``op=predict`` with ``body``
    (JSON): the prediction. Both through the gateway, with the service's token."""
    service = _service(request, service_id)
    op = request.POST.get("op", "predict")
    if op not in ("metadata", "predict"):
        return JsonResponse({"error": "op is metadata or predict"}, status=400)
    body = None
    if op == "predict":
        text = request.POST.get("body", "")
        if len(text) > CONSOLE_MAX_BODY:
            return JsonResponse({"error": "the body is over 1 MiB"}, status=400)
        try:
            jsonlimits.loads(text)
        except ValueError as exc:
            return JsonResponse({"error": f"the body is not JSON: {exc}"}, status=400)
        body = text.encode()
    result = _gateway_call(service, op, body)
    if op == "metadata" and result["status"] == 200 and isinstance(result["body"], dict):
        result["sample"] = sample_body(result["body"])
    return JsonResponse(result)
