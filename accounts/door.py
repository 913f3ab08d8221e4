"""The one door: how every API viewset and every web page of every app lets a request in.

Both the scoped viewset base (``accounts.api.base.ScopedViewSet``) and the page decorator
(:func:`page`) use the three questions here, in this order, before a handler reads a byte of
the request body (authorization before validation):

1. **Who acts?** :func:`require_actor` — the membership the session or API key chose; a
   logged-in user with none (an operator, a user whose memberships were removed) is refused
   with 403.
2. **May they do this to the collection?** :func:`check_collection` — the catalogue action the
   HTTP action needs, against the tenant-wide resource ``ems:*:<app_id>:<kind>/*``.
3. **May they do this to this object?** :func:`lookup` — the object among the rows they may
   read, then the action on the object.

The answers follow a cloud IAM:

- no permission for the action: 403 naming the action (``ActionDenied``);
- an object of another tenant (or none at all): 404, never a 403 that confirms it exists;
- an object of your tenant you may not act on, read included: 403 naming the action;
- an action that needs the service role before the tenant authorized it: 403 with the link
  to the authorize page (``ServiceRoleNotAuthorized``).

A page or viewset action that needs no catalogue action (sign-up, login, the dashboard) says
so with a reason (:func:`page` ``public=``, ``ScopedViewSet.public_actions``); the test
``tests/accounts/test_door.py`` walks every route and fails on one with neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpResponseBadRequest
from django.views.decorators.http import require_http_methods

from accounts import authz, catalogue
from accounts.actor import resolve_actor, set_actor
from accounts.audit import record
from accounts.models import AuditEvent
from accounts.scoping import TenantOwnedModel

NO_MEMBERSHIP = "You have no active membership in an account."


class NoMembership(PermissionDenied):
    """A logged-in user acting in no tenant."""

    def __init__(self):
        super().__init__(NO_MEMBERSHIP)


def actor_of(request):
    """The request's actor (a Membership), resolved once; None for anonymous users."""
    actor = getattr(request, "actor", None)
    user = getattr(request, "user", None)
    if actor is None and user is not None and user.is_authenticated:
        actor = resolve_actor(user)
        set_actor(getattr(request, "_request", request), actor)
    return actor


def require_actor(request):
    actor = actor_of(request)
    if actor is None:
        raise NoMembership
    return actor


def check(actor, action: str, resource) -> None:
    """``authz.check`` that writes a ``denied`` audit row before refusing (as the services'
    own guard does), so a refusal at the door is in the tenant's audit log too."""
    try:
        authz.check(actor, action, resource)
    except PermissionDenied:
        name = resource if isinstance(resource, str) else getattr(resource, "resource_name", "")
        with transaction.atomic():
            record(actor=actor, action=action, resource=name, outcome=AuditEvent.DENIED)
        raise


def collection_resource(actor, action: str) -> str:
    info = catalogue.get_action(action)
    return authz.resource_name(actor.tenant, info.kind if info else "*", "*")


def check_collection(actor, action: str) -> None:
    """The action on the tenant-wide resource of its kind; raises 403 naming it."""
    check(actor, action, collection_resource(actor, action))


def _tenant_row(actor, queryset, filters: dict):
    """The row of the actor's tenant that ``filters`` names, whatever the policies say."""
    model = queryset.model
    if not issubclass(model, TenantOwnedModel):
        return None
    return model.scope_q(actor, model.objects.all()).filter(**filters).first()


def lookup(actor, queryset, action: str | None, **filters):
    """The object ``filters`` name in ``queryset`` (rows the actor may read), checked for
    ``action``. Not found there: if the actor's tenant has it and the actor may not do
    ``action`` to it, 403 naming the action; otherwise (another tenant's, none) 404."""
    try:
        obj = queryset.filter(**filters).first()
    except (ValueError, TypeError, ValidationError):  # "abc" for an integer id
        raise Http404("No such object in this account.") from None
    if obj is None:
        row = _tenant_row(actor, queryset, filters) if action else None
        if row is not None:
            check(actor, action, row)  # raises: yours, but not for you
        raise Http404("No such object in this account.")
    if action:
        check(actor, action, obj)
    return obj


# --- pages ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class By:
    """An action chosen by a request value: a URL argument, else a POST field, named ``field``.

    ``By("op", {"attach": "accounts:AttachPolicy", "detach": "accounts:DetachPolicy"})``;
    a value not in ``actions`` is refused (404 for a URL argument, 400 for a field) unless a
    ``default`` action is given.
    """

    field: str
    actions: dict
    default: str | None = None

    def resolve(self, request, kwargs) -> str:
        in_url = self.field in kwargs
        value = kwargs[self.field] if in_url else request.POST.get(self.field, "")
        found = self.actions.get(value, self.default)
        if found is None:
            if in_url:
                raise Http404(f"No such {self.field}: {value}.")
            raise _BadOp(f"Unknown {self.field} {value!r}: one of {', '.join(self.actions)}.")
        return found

    def names(self) -> list[str]:
        return [*self.actions.values(), *([self.default] if self.default else [])]


class _BadOp(Exception):
    pass


def page_action(request, kwargs: dict) -> str | None:
    """The action the current page request needs (set by :func:`page`): a name, a :class:`By`,
    or a function ``(request, kwargs) -> name``."""
    spec = request.door_actions.get(request.method)
    if isinstance(spec, By):
        return spec.resolve(request, kwargs)
    return spec(request, kwargs) if callable(spec) else spec


def page(
    *methods: str,
    actions=None,
    object: bool = False,
    public: str | None = None,
    login: bool = True,
):
    """Decorate a web page: the HTTP ``methods`` it answers, and what each needs.

    ``actions``: a catalogue action for every method, or ``{method: action | By(...) | fn}``.
    A collection page (``object=False``) is checked against the tenant-wide resource before the
    view runs; an object page looks its object up with :func:`page_object`, which checks the
    action on it (a page that returns without doing so is a programming error: 500).
    ``public``: the reason a page (or its methods not in ``actions``) needs no action; it still
    needs a login (pages for anonymous users use :func:`anonymous`).
    Pages answer 403 (a logged-in user in no tenant, or no permission) with the action named.

    ``page("GET")`` alone (the old signature, ``login=False`` included) still decorates, but
    declares nothing: ``tests/accounts/test_door.py`` fails until the page says what it needs.
    """
    if actions is None and public is None:
        return _undeclared(methods, login)
    per_method = actions if isinstance(actions, dict) else dict.fromkeys(methods, actions)
    if actions is None:
        per_method = {}
    unknown = set(per_method) - set(methods)
    if unknown or (public is None and set(per_method) != set(methods)):
        raise ImproperlyConfigured(f"page(): actions for {sorted(per_method)}, methods {methods}")

    def decorate(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in per_method:  # a public method of this page
                return view(request, *args, **kwargs)
            actor = require_actor(request)
            request.door_actions = per_method
            try:
                action = page_action(request, kwargs)
            except _BadOp as exc:
                return HttpResponseBadRequest(str(exc))
            request.door_action = action
            if not object:
                check_collection(actor, action)
                return view(request, *args, **kwargs)
            request.door_checked = False
            response = view(request, *args, **kwargs)
            if not request.door_checked:
                raise ImproperlyConfigured(f"{view.__name__}: object page without page_object()")
            return response

        guarded = login_required(require_http_methods(list(methods))(wrapped))
        guarded.http_methods = tuple(methods)
        guarded.door_actions = per_method
        guarded.door_public = public if set(per_method) != set(methods) else None
        guarded.door_object = object
        return guarded

    return decorate


def _undeclared(methods, login: bool):
    def decorate(view):
        guarded = require_http_methods(list(methods))(view)
        if login:
            guarded = login_required(guarded)
        guarded = wraps(view)(guarded)
        guarded.http_methods = tuple(methods)
        return guarded

    return decorate


def anonymous(*methods: str, reason: str):
    """A page anyone may open without logging in (sign-up, login): no actor, no action."""

    def decorate(view):
        guarded = wraps(view)(require_http_methods(list(methods))(view))
        guarded.http_methods = tuple(methods)
        guarded.door_actions = None
        guarded.door_public = reason
        guarded.door_object = False
        return guarded

    return decorate


def page_object(request, queryset, **filters):
    """The object page's object, checked for the page's action (see :func:`lookup`)."""
    obj = lookup(require_actor(request), queryset, request.door_action, **filters)
    request.door_checked = True
    return obj


def page_collection(request, action: str | None = None) -> None:
    """On an object page, a request that acts on the collection instead (e.g. the page's
    create form): checked on the tenant-wide resource."""
    check_collection(require_actor(request), action or request.door_action)
    request.door_checked = True
