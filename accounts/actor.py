"""Resolving **the actor** (a Membership) of a request, and the middleware that sets it."""

from __future__ import annotations

from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.errors import ServiceRoleNotAuthorized
from accounts.models import Membership

SESSION_KEY = "ems_active_membership"


class PlatformActor:
    """The platform acting inside one tenant through the same services as its members: an
    operator in the admin (``operator``: their user) or an automatic change (``reason``).

    Authorized for everything in that tenant (``accounts.authz``); audited under its own label
    (``operator alice``, ``platform (tenant suspended)``), never as one of the tenant's members.
    """

    is_platform = True
    kind = "platform"
    MAIN = "main"
    ACCEPTED = status = "accepted"
    pk = None

    def __init__(self, tenant, *, operator=None, reason: str = "") -> None:
        self.tenant = tenant
        self.tenant_id = tenant.pk
        self.operator = operator
        self.user = operator
        self.reason = reason

    @property
    def label(self) -> str:
        if self.operator is not None:
            return f"operator {self.operator.get_username()}"
        return f"platform ({self.reason or 'automatic'})"

    name = label

    @property
    def is_main(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.label


def member_or_none(actor):
    """The membership to store in a ``*_by`` column: None for the platform."""
    return None if getattr(actor, "is_platform", False) else actor


def suspension_refusal(user) -> str | None:
    """The message refusing ``user``'s login when every tenant it belongs to is suspended."""

    rows = list(
        Membership.objects.filter(user=user, status=Membership.ACCEPTED).select_related("tenant")
    )
    if rows and all(row.tenant.is_suspended for row in rows):
        return rows[0].tenant.suspension_message
    return None


def memberships_of(user):
    """The user's accepted memberships in tenants that are not suspended."""

    return (
        Membership.objects.filter(
            user=user, status=Membership.ACCEPTED, tenant__suspended_at__isnull=True
        )
        .select_related("tenant", "user")
        .order_by("created_at", "pk")
    )


def resolve_actor(user, wanted_id=None):
    """The active membership: the one the session chose, else the user's main account, else the
    first accepted membership; None for anonymous users and users of no tenant (operators)."""
    if user is None or not user.is_authenticated:
        return None
    choices = list(memberships_of(user))
    if not choices:
        return None
    for membership in choices:
        if wanted_id is not None and str(membership.pk) == str(wanted_id):
            return membership
    for membership in choices:
        if membership.kind == membership.MAIN:
            return membership
    return choices[0]


def set_actor(request, actor) -> None:
    request.actor = actor
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        request.user._ems_actor = actor


def is_restricted(actor) -> bool:
    """A sub-account or collaborator with no policy and no per-object grant: login restricted."""
    if actor is None or actor.kind == actor.MAIN:
        return False
    if actor.attachments.exists():
        return False
    from guardian.models import UserObjectPermission

    return not UserObjectPermission.objects.filter(user_id=actor.user_id).exists()


# Paths a restricted member may still open (names in the "accounts" namespace).
RESTRICTED_ALLOWED = {
    "restricted",
    "logout",
    "login",
    "switch-tenant",
    "password-reset",
    "password-reset-done",
    "password-reset-confirm",
    "password-reset-complete",
    "signup",
    "invitation-accept",
}


class ActorMiddleware:
    """Sets ``request.actor``; sends a restricted member's page views (every app's pages, not
    the API or the admin) to the restricted page;
    turns ``ServiceRoleNotAuthorized`` from a page into a message linking to the authorize page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        wanted = session.get(SESSION_KEY) if session is not None else None
        set_actor(request, resolve_actor(getattr(request, "user", None), wanted))
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        actor = getattr(request, "actor", None)
        if actor is None or actor.kind == actor.MAIN:
            return None
        match = request.resolver_match
        if match is None or request.path.startswith("/api/") or match.url_name == "home":
            return None
        if {"admin", "tenant_admin"} & set(match.namespaces):
            return None
        if "accounts" in match.namespaces and match.url_name in RESTRICTED_ALLOWED:
            return None
        if match.url_name in {"healthz", "schema", "swagger-ui"}:
            return None
        if is_restricted(actor):
            return redirect(reverse("accounts:restricted"))
        return None

    def process_exception(self, request, exception):
        if isinstance(exception, ServiceRoleNotAuthorized):
            if request.path.startswith("/api/"):
                return None
            return render(
                request,
                "accounts/service_role_required.html",
                {"error": exception, "authorize_url": exception.authorize_url},
                status=403,
            )
        return None
