"""Site-wide pages: home and the health check."""

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal.health import run_checks


@require_GET
def home(request):
    return render(request, "portal/home.html")


@never_cache
@require_GET
def healthz(request):
    """200 when the database, the broker and a worker all answer, else 503 with what failed.

    ``?worker=0`` skips the worker round trip (a liveness probe for the web process alone).
    """
    include_worker = request.GET.get("worker", "1") != "0"
    checks = run_checks(include_worker=include_worker)
    healthy = all(check.ok for check in checks)
    body = {
        "status": "ok" if healthy else "fail",
        "checks": {check.name: check.as_dict() for check in checks},
    }
    return JsonResponse(body, status=200 if healthy else 503)
