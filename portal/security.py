"""Security headers the SecurityMiddleware does not set: a Content-Security-Policy with a
per-request script nonce (``settings.EMS_CSP``) and a Permissions-Policy.

Pages' inline scripts carry ``nonce="{{ request.csp_nonce }}"``; everything else (Swagger UI
included, served by ``SpectacularSwaggerSplitView``) loads scripts from this origin.
"""

from __future__ import annotations

import secrets

from django.conf import settings

PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        policy = settings.EMS_CSP
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy.replace("{nonce}", request.csp_nonce)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
