"""Rate limits: 429 with ``Retry-After``, per client IP and per account, on the Django cache.

One counter per (scope, who, window): ``cache.add`` then ``cache.incr``, both atomic on Redis
(the production cache), so concurrent requests never lose a hit. Scopes and their rates are
``settings.EMS_THROTTLE_RATES`` (from ``EMS_THROTTLE_*``), read on every hit so tests can lower
them:

- ``api``: every API request of an authenticated account; ``api_anon``: per IP without one;
- ``login``: web login and HTTP-basic API logins, per IP and per username tried;
- ``signup``: web and API sign-up, per IP;
- ``sensitive``: API-key creation and service-token reveal, per IP and per account.

The client IP is ``REMOTE_ADDR``; behind a reverse proxy set ``EMS_TRUSTED_PROXIES`` (the number
of proxies in front) so the address the last trusted proxy saw is used instead.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from rest_framework.throttling import BaseThrottle

from portal.env import RATE_UNITS as UNITS


def parse_rate(rate: str) -> tuple[int, int]:
    """``"10/minute"`` -> (10, 60). Raises ImproperlyConfigured on anything else."""
    count, _, unit = str(rate).partition("/")
    try:
        number = int(count)
        seconds = UNITS[unit.strip().lower()]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"bad rate {rate!r}: use <count>/<second|minute|hour|day>, e.g. 10/minute"
        ) from None
    if number < 1:
        raise ImproperlyConfigured(f"bad rate {rate!r}: the count is at least 1")
    return number, seconds


class RateLimited(Exception):
    """Too many requests in ``scope``; the caller may retry after ``retry_after`` seconds."""

    def __init__(self, scope: str, retry_after: int) -> None:
        self.scope = scope
        self.retry_after = max(1, int(retry_after))
        super().__init__(f"Too many requests ({scope}). Try again in {self.retry_after} second(s).")


def hit(scope: str, who: str) -> int | None:
    """Count one request of ``who`` in ``scope``: None when allowed, else seconds to wait."""
    number, period = parse_rate(settings.EMS_THROTTLE_RATES[scope])
    now = time.time()
    window = int(now // period)
    key = f"throttle:{getattr(settings, 'EMS_THROTTLE_NAMESPACE', '')}:{scope}:{who}:{window}"
    cache.add(key, 0, period + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, period + 1)
        count = 1
    if count > number:
        return math.ceil((window + 1) * period - now)
    return None


def client_ip(request) -> str:
    meta = getattr(request, "META", {})
    hops = getattr(settings, "EMS_TRUSTED_PROXIES", 0)
    if hops:
        forwarded = [p.strip() for p in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [p for p in forwarded if p]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return meta.get("REMOTE_ADDR", "") or "unknown"


def limit(request, scope: str, *, account: str | None = None) -> None:
    """Count a request per IP and (when given) per account; raise RateLimited over the rate."""
    waits = [hit(scope, f"ip:{client_ip(request)}")]
    if account:
        waits.append(hit(scope, f"account:{account.lower()}"))
    waits = [w for w in waits if w is not None]
    if waits:
        raise RateLimited(scope, max(waits))


def account_of(request) -> str | None:
    """The throttling identity of the request's account: its membership, else its user."""
    actor = getattr(request, "actor", None)
    if actor is not None:
        return f"member:{actor.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


class ApiThrottle(BaseThrottle):
    """The API as a whole: per account when authenticated, per IP otherwise."""

    def allow_request(self, request, view) -> bool:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._wait = hit("api", f"user:{user.pk}")
        else:
            self._wait = hit("api_anon", f"ip:{client_ip(request)}")
        return self._wait is None

    def wait(self):
        return self._wait


def too_many(exc: RateLimited, *, json: bool, request=None) -> HttpResponse:
    headers = {"Retry-After": str(exc.retry_after)}
    if json:
        return JsonResponse({"detail": str(exc)}, status=429, headers=headers)
    body = render_to_string("rate_limited.html", {"error": exc}, request=request)
    return HttpResponse(body, status=429, headers=headers)


class RateLimitMiddleware:
    """Pages that raise RateLimited answer 429 with ``Retry-After`` (the API's handler does
    the same in JSON)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RateLimited):
            return too_many(exception, json=request.path.startswith("/api/"), request=request)
        return None
