"""The one scoped viewset base of the REST API (the API side of ``accounts.door``).

A viewset declares ``required_actions = {<DRF action>: "<ns>:<Action>"}`` for every action it
routes, ``list`` included (``{<HTTP method>: "<ns>:<Action>"}`` for an extra action that answers
several methods), and ``scoped(actor)``: the tenant-scoped queryset (a selector). Or, for
an action that needs no catalogue action, ``public_actions = {<DRF action>: "<why>"}``.

Before the handler runs (so before any validation of the body):

- a collection action (``list``, ``create``, ``detail=False`` extras) is checked against the
  tenant-wide resource of the action's kind;
- a detail action looks its object up (:func:`accounts.door.lookup`): 404 for another tenant's
  object, 403 naming the action for an object of yours you may not act on. The handler's
  ``get_object()`` returns that object.

An action with neither a required action nor a public reason is refused (403) at run time, and
``tests/accounts/test_door.py`` fails on it before it ships.
"""

from __future__ import annotations

from rest_framework import viewsets
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied
from rest_framework.permissions import BasePermission

from accounts import door


def request_actor(request):
    return door.actor_of(request)


def required_action(view) -> str | None:
    """The catalogue action of the view's current DRF action: ``required_actions[action]``, a
    name or ``{HTTP method: name}`` for an extra action answering several methods."""
    spec = getattr(view, "required_actions", {}).get(getattr(view, "action", None))
    if isinstance(spec, dict):
        request = getattr(view, "request", None)
        return spec.get(request.method) if request is not None else None
    return spec


class ActionPermission(BasePermission):
    """Authenticated, acting in a tenant, and allowed the collection action (object actions are
    checked by the base's ``get_object``)."""

    message = door.NO_MEMBERSHIP

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        name = getattr(view, "action", None)
        if name in getattr(view, "public_actions", {}):
            return True
        action = required_action(view)
        if action is None:
            # a method the route does not have (DRF answers 405), or OPTIONS (DRF's "metadata":
            # the endpoint's description, no tenant data)
            if name in (None, "metadata"):
                return True
            raise ApiPermissionDenied(f"{type(view).__name__}.{name} declares no action.")
        actor = door.require_actor(request)
        if not view.detail:
            door.check_collection(actor, action)
        return True

    def has_object_permission(self, request, view, obj):
        return True  # checked in ScopedViewSet.get_object (door.lookup)


class ScopedViewSet(viewsets.GenericViewSet):
    """The base of every viewset: actor, scoping, the action per DRF action, authorization
    before validation (see the module docstring)."""

    permission_classes = [ActionPermission]
    required_actions: dict[str, str] = {}
    public_actions: dict[str, str] = {}

    def actor(self):
        return door.require_actor(self.request)

    def scoped(self, actor):  # pragma: no cover - every subclass with objects overrides
        raise NotImplementedError(f"{type(self).__name__}.scoped(actor)")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        return self.scoped(self.actor())

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["actor"] = door.actor_of(self.request)
        return context

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.detail and required_action(self) is not None:
            self.get_object()  # the object check, before the handler validates anything

    def lookup_filters(self) -> dict:
        url_kwarg = self.lookup_url_kwarg or self.lookup_field
        return {self.lookup_field: self.kwargs[url_kwarg]}

    def get_object(self):
        cached = getattr(self, "_door_object", None)
        if cached is not None:
            return cached
        queryset = self.filter_queryset(self.get_queryset())
        obj = door.lookup(self.actor(), queryset, required_action(self), **self.lookup_filters())
        self._door_object = obj
        return obj
