"""The invoke page: the service's gateway address, its token (revealed on click, audited), the
curl line, and a console that sends a request through the gateway and shows the answer and its
latency. The console is a server-side proxy (no CORS): it calls only
``EMS_GATEWAY_URL/<service id>/v1/models/m…`` with the service's own token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from accounts import authz
from serving import access, selectors
from gateway.tokens import decrypt

CONSOLE_MAX_BODY = 1 << 20
CONSOLE_TIMEOUT = 30.0
DTYPE_ZERO = {
    "DT_STRING": {"b64": ""},
    "DT_BOOL": False,
    "DT_FLOAT": 0.0,
    "DT_DOUBLE": 0.0,
    "DT_HALF": 0.0,
}


def _actor(request):
    actor = getattr(request, "actor", None)
    if actor is None:
        raise PermissionDenied("You have no active membership in an account.")
    return actor


def _service(request, service_id: str, action: str):
    return get_object_or_404(
        selectors.services(actor=_actor(request), action=action), service_id=service_id
    )


def _value(dtype: str, dims: list[int]):
    if not dims:
        return DTYPE_ZERO.get(dtype, 0)
    size = dims[0] if dims[0] > 0 else 1
    return [_value(dtype, dims[1:]) for _ in range(min(size, 64))]


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


@login_required
@require_http_methods(["GET"])
def invoke_page(request, service_id: str):
    actor = _actor(request)
    service = _service(request, service_id, "ems:DescribeService")
    context = {
        "service": service,
        **access.addresses(service),
        "curl": access.curl_line(service),
        "may_see_token": authz.is_allowed(actor, "ems:DescribeServiceToken", service),
    }
    return render(request, "serving/service_invoke.html", context)


@login_required
@require_http_methods(["POST"])
def invoke_token(request, service_id: str):
    """The token in clear, for the page's "reveal" button (audited by the service)."""
    actor = _actor(request)
    service = _service(request, service_id, "ems:DescribeServiceToken")
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
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return {"status": status, "latency_ms": round(latency, 2), "body": parsed}


@login_required
@require_http_methods(["POST"])
def invoke_console(request, service_id: str):
    """``op=metadata``: the model's metadata and a sample body; ``op=predict`` with ``body``
    (JSON): the prediction. Both through the gateway, with the service's token."""
    service = _service(request, service_id, "ems:DescribeServiceToken")
    op = request.POST.get("op", "predict")
    if op not in ("metadata", "predict"):
        return JsonResponse({"error": "op is metadata or predict"}, status=400)
    body = None
    if op == "predict":
        text = request.POST.get("body", "")
        if len(text) > CONSOLE_MAX_BODY:
            return JsonResponse({"error": "the body is over 1 MiB"}, status=400)
        try:
            json.loads(text)
        except ValueError as exc:
            return JsonResponse({"error": f"the body is not JSON: {exc}"}, status=400)
        body = text.encode()
    result = _gateway_call(service, op, body)
    if op == "metadata" and result["status"] == 200 and isinstance(result["body"], dict):
        result["sample"] = sample_body(result["body"])
    return JsonResponse(result)


invoke_page.http_methods = ("GET",)
invoke_token.http_methods = ("POST",)
invoke_console.http_methods = ("POST",)
