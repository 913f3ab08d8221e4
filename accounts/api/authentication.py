"""API authentication: ``Authorization: Bearer <api key>`` (the key's membership is the actor),
the session (actor from the tenant switcher) and, for creating the first key, HTTP basic."""

from __future__ import annotations

import base64

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import (
    BaseAuthentication,
    BasicAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, Throttled

from accounts import throttles
from accounts.actor import resolve_actor, set_actor, suspension_refusal
from accounts.services import api_key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        key = api_key_authenticate(parts[1].decode("latin-1"))
        if key is None or not key.membership.is_active:
            raise AuthenticationFailed("Invalid or revoked API key.")
        if key.membership.tenant.is_suspended:
            raise PermissionDenied(key.membership.tenant.suspension_message)
        user = key.membership.user
        user._ems_actor = key.membership
        set_actor(request._request, key.membership)
        return user, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ActorSessionAuthentication(SessionAuthentication):
    """The session; the actor comes from ``ActorMiddleware``."""


class ActorBasicAuthentication(BasicAuthentication):
    """HTTP basic (only where a viewset asks for it: creating API keys); the actor is the
    user's main account or first membership."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if parts and parts[0].lower() == b"basic":
            # every password try counts, per IP and per username, before it is checked
            try:
                tried = base64.b64decode(parts[1]).decode("utf-8").partition(":")[0]
            except (IndexError, ValueError):
                tried = ""
            try:
                throttles.limit(request, "login", account=tried or None)
            except throttles.RateLimited as exc:
                raise Throttled(exc.retry_after, str(exc)) from None
        result = super().authenticate(request)
        if result is not None:
            refusal = suspension_refusal(result[0])
            if refusal:
                raise PermissionDenied(refusal)
            set_actor(request._request, resolve_actor(result[0]))
        return result


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An EMS API key."}


class ActorBasicScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ActorBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic"}


class ActorSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.ActorSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
