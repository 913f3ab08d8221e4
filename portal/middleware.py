"""A database that cannot be reached is a 503 that says so, not a 500 with a traceback.

Django opens a fresh connection on the next request once the database answers again (and
``CONN_HEALTH_CHECKS`` drops a stale persistent one first), so nothing needs restarting.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views import defaults

log = logging.getLogger("portal.database")

MESSAGE = "the database is unavailable; try again shortly"


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.error("database unavailable for %s %s: %s", request.method, request.path, exception)
        return unavailable(request)


def unavailable(request):
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": MESSAGE}, status=503)
    else:
        response = HttpResponse(MESSAGE, status=503, content_type="text/plain")
    response["Retry-After"] = "5"
    return response


def server_error(request):
    """``handler500``: the same 503 when the failure came from a middleware's database use
    (the session, the user), else Django's own 500 page."""
    exception = sys.exc_info()[1]
    if isinstance(exception, OperationalError | InterfaceError):
        return unavailable(request)
    return defaults.server_error(request)
