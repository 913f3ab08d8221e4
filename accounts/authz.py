"""The one authorization engine: web pages, the API, the admin and templates all ask it.

Order of evaluation for ``(actor, action, resource)``:

1. no active membership, an unknown action, or a resource of another tenant: denied;
2. an action that needs the service role while the tenant has not authorized it: denied with
   reason ``service_role`` (``check`` raises ``ServiceRoleNotAuthorized``);
3. the main account: allowed (everything in its own tenant);
4. the member's attached policies: an explicit deny wins, then an allow;
5. with a model instance as resource, a django-guardian per-object grant allows (unless a
   statement denied it in step 4).

Decisions are cached on the actor object, which the middleware makes once per request.

This module imports no model (``accounts.models`` imports it through ``accounts.scoping``): it
reads rows through the actor's and the tenant's relations.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from accounts import catalogue, policy, service_role
from accounts.errors import ActionDenied, ServiceRoleNotAuthorized


@dataclass(frozen=True)
class Decision:
    allowed: bool
    statement: dict | None = None
    policy: str | None = None
    reason: str = ""


def resource_name(tenant, kind: str, ident="*", region: str = "*") -> str:
    app_id = tenant.app_id if tenant is not None else "*"
    return f"ems:{region}:{app_id}:{kind}/{ident}"


def _cache(actor) -> dict:
    cache = getattr(actor, "_authz_cache", None)
    if cache is None:
        cache = {"decisions": {}}
        actor._authz_cache = cache
    return cache


def invalidate(actor) -> None:
    """Forget cached decisions (after attaching/detaching policies in the same request)."""
    if actor is not None and hasattr(actor, "_authz_cache"):
        del actor._authz_cache


def attached_policies(actor) -> list[tuple[str, dict]]:
    cache = _cache(actor)
    if "policies" not in cache:
        rows = actor.attachments.select_related("policy")
        cache["policies"] = [(row.policy.name, row.policy.document) for row in rows]
    return cache["policies"]


def _service_role_ok(actor) -> bool:
    cache = _cache(actor)
    if "service_role" not in cache:
        cache["service_role"] = service_role.is_authorized(actor.tenant)
    return cache["service_role"]


def _resource(actor, resource) -> tuple[str, models.Model | None]:
    if isinstance(resource, models.Model):
        tenant_id = getattr(resource, "tenant_id", None)
        if tenant_id is None:  # a platform row (preset policy): named inside the actor's tenant
            name = resource_name(actor.tenant, resource.resource_kind, resource.resource_ident)
        elif tenant_id != actor.tenant_id:
            return "", resource
        else:
            name = resource.resource_name
        return name, resource
    return str(resource), None


def _active(actor) -> bool:
    if getattr(actor, "is_platform", False):
        return True
    return (
        actor is not None
        and getattr(actor, "pk", None) is not None
        and actor.status == actor.ACCEPTED
        and actor.user.is_active
    )


def _guardian_perm(action: str, obj) -> str:
    verb = action.split(":", 1)[1]
    info = catalogue.get_action(action)
    if verb.startswith("Delete"):
        prefix = "delete"
    elif info is not None and info.access == "write":
        prefix = "change"
    else:
        prefix = "view"
    return f"{obj._meta.app_label}.{prefix}_{obj._meta.model_name}"


def _object_grant(actor, action: str, obj) -> bool:
    # django-guardian's models load with the app registry, after this module (which the
    # models import through accounts.scoping): imported on the first per-object question.
    from guardian.core import ObjectPermissionChecker

    cache = _cache(actor)
    checker = cache.get("guardian")
    if checker is None:
        checker = cache["guardian"] = ObjectPermissionChecker(actor.user)
    return checker.has_perm(_guardian_perm(action, obj), obj)


def explain(actor, action: str, resource) -> Decision:
    if not _active(actor):
        return Decision(False, reason="no active membership")
    info = catalogue.get_action(action)
    if info is None:
        return Decision(False, reason=f"unknown action {action}")
    name, obj = _resource(actor, resource)
    key = (action, name, obj.pk if obj is not None else None, type(obj))
    decisions = _cache(actor)["decisions"]
    if key in decisions:
        return decisions[key]
    decision = _decide(actor, info, name, obj)
    decisions[key] = decision
    return decision


def _decide(actor, info, name: str, obj) -> Decision:
    parts = name.split(":")
    if len(parts) < 4 or parts[0] != "ems" or parts[2] != actor.tenant.app_id:
        return Decision(False, reason="resource outside your tenant")
    if getattr(actor, "is_platform", False):
        return Decision(True, reason=actor.label)
    if info.service_role and not _service_role_ok(actor):
        return Decision(False, reason="service_role")
    if actor.kind == actor.MAIN:
        return Decision(True, reason="main account")
    allowed, statement, policy_name = policy.evaluate(attached_policies(actor), info.name, name)
    if statement is not None and not allowed:
        return Decision(False, statement, policy_name, "explicit deny")
    if allowed:
        return Decision(True, statement, policy_name, "allowed by policy")
    if obj is not None and _object_grant(actor, info.name, obj):
        return Decision(True, reason="per-object grant")
    return Decision(False, reason="no statement allows it")


def is_allowed(actor, action: str, resource) -> bool:
    return explain(actor, action, resource).allowed


def check(actor, action: str, resource) -> None:
    decision = explain(actor, action, resource)
    if decision.allowed:
        return
    if decision.reason == "service_role":
        raise ServiceRoleNotAuthorized(actor.tenant)
    raise ActionDenied(action, _resource(actor, resource)[0])


def _has_specific_deny(actor, action: str) -> bool:
    for _, document in attached_policies(actor):
        for st in document.get("statement", ()):
            if st["effect"] == "deny" and any(
                policy.action_matches(p, action) for p in st["action"]
            ):
                return True
    return False


def scope_queryset(actor, action: str, queryset):
    """The rows of ``queryset`` (already cut to the actor's tenant) the actor may ``action``."""
    if not _active(actor):
        return queryset.none()
    info = catalogue.get_action(action)
    if info is None:
        return queryset.none()
    if info.service_role and not _service_role_ok(actor):
        return queryset.none()
    model = queryset.model
    wide = resource_name(actor.tenant, getattr(model, "resource_kind", "*"), "*")
    if actor.kind == actor.MAIN:
        return queryset
    if is_allowed(actor, action, wide) and not _has_specific_deny(actor, action):
        return queryset
    # Some resources only (or a deny on some): decide row by row, guardian grants included.
    ids = []
    for obj in queryset:
        if obj.tenant_id == actor.tenant_id:
            obj.tenant = actor.tenant
        if is_allowed(actor, action, obj):
            ids.append(obj.pk)
    return queryset.filter(pk__in=ids)
