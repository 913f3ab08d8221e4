"""Errors the accounts app raises for other apps to catch (or let the handlers turn into pages)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied


class ServiceRoleNotAuthorized(PermissionDenied):
    """The tenant has not authorized the platform's service role (SPEC step 2).

    A ``PermissionDenied`` so any caller that refuses on denial refuses here too; the DRF exception
    handler and ``ServiceRoleMiddleware`` turn it into a message linking to the authorize page.
    """

    code = "service_role_not_authorized"

    def __init__(self, tenant=None, message: str | None = None):
        from django.urls import reverse

        self.tenant = tenant
        self.authorize_url = reverse("accounts:service-role")
        self.message = message or (
            "The platform's service role (EMS_ServiceRole) is not authorized for this account. "
            f"Authorize it at {self.authorize_url} (main account, or a sub-account holding "
            "EMSAuthorizeRole)."
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ActionDenied(PermissionDenied):
    """The actor may not do ``action`` to ``resource`` (a 403 that names the action)."""

    code = "action_denied"

    def __init__(self, action: str, resource: str = ""):
        self.action = action
        self.resource = resource
        self.message = f"{action} is not allowed on {resource or 'it'}."
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
