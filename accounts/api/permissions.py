"""The DRF permission class that asks the one engine.

A viewset declares ``required_actions`` (DRF action -> catalogue action). Collection actions are
checked against the tenant-wide resource (``<kind>/*``); object actions against the object
(``has_object_permission``), after ``get_queryset`` has scoped rows with the read action, so an
allowed reader gets 403 on a write and another tenant's object is a 404.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts import authz, catalogue
from accounts.actor import resolve_actor, set_actor


def request_actor(request):
    actor = getattr(request, "actor", None)
    if actor is None and request.user and request.user.is_authenticated:
        actor = resolve_actor(request.user)
        set_actor(request._request, actor)
    return actor


def required_action(view) -> str | None:
    return getattr(view, "required_actions", {}).get(getattr(view, "action", None))


class ActionPermission(BasePermission):
    message = "You have no active membership in an account."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        action = required_action(view)
        if action is None:
            return True
        actor = request_actor(request)
        if actor is None:
            return False
        if not view.detail:
            info = catalogue.get_action(action)
            kind = info.kind if info else "*"
            authz.check(actor, action, authz.resource_name(actor.tenant, kind, "*"))
        return True

    def has_object_permission(self, request, view, obj):
        action = required_action(view)
        if action is None:
            return True
        authz.check(request_actor(request), action, obj)
        return True
