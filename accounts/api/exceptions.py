"""The API's exception handler: the service-role error with its link, Django validation errors
as 400 with field messages, then DRF's own handling."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.errors import ServiceRoleNotAuthorized
from accounts.throttles import RateLimited, too_many


def exception_handler(exc, context):
    if isinstance(exc, RateLimited):
        return too_many(exc, json=True)
    if isinstance(exc, ServiceRoleNotAuthorized):
        return Response(
            {"detail": exc.message, "code": exc.code, "authorize_url": exc.authorize_url},
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
    return drf_exception_handler(exc, context)
