"""The API's exception handler: one error body for every app.

- a refusal or any other error: ``{"detail": "<what to do>", "code": "<machine code>"}``, plus
  ``"action"`` (the catalogue action) on a 403 for a missing permission and ``"authorize_url"``
  when the service role is not authorized;
- invalid input: 400 with ``{"<field>": ["<message>", …]}`` (``non_field_errors``/``detail`` for
  errors of the whole body), DRF's shape, for Django's ``ValidationError`` from a service too.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.errors import ActionDenied, ServiceRoleNotAuthorized
from accounts.throttles import RateLimited, too_many


def exception_handler(exc, context):
    if isinstance(exc, RateLimited):
        return too_many(exc, json=True)
    if isinstance(exc, ServiceRoleNotAuthorized):
        return Response(
            {"detail": exc.message, "code": exc.code, "authorize_url": exc.authorize_url},
            status=status.HTTP_403_FORBIDDEN,
        )
    if isinstance(exc, ActionDenied):
        return Response(
            {"detail": exc.message, "code": exc.code, "action": exc.action},
            status=status.HTTP_403_FORBIDDEN,
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            body = {
                field: [m for err in errs for m in err.messages]
                for field, errs in exc.error_dict.items()
            }
        else:
            body = {"detail": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or exceptions.NotFound.default_detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or exceptions.PermissionDenied.default_detail)
    response = drf_exception_handler(exc, context)
    if (
        response is not None
        and isinstance(exc, exceptions.APIException)
        and not isinstance(exc, exceptions.ValidationError)
        and isinstance(response.data, dict)
        and "detail" in response.data
    ):
        response.data.setdefault("code", getattr(exc.detail, "code", None) or exc.default_code)
    return response
