"""The isolation walk: every URL pattern × method of the project, as the outsider.

It enumerates the URL resolver (API router, web pages, the operator admin and the tenant
admin), fills each pattern from the registry in ``tests/isolation.py`` — which every app extends
with a ``tests/<app>/isolation_<app>.py`` module (read that docstring to register your URLs) —
and sends each request as the outsider (the main account of another tenant). It asserts:

- a URL naming the victim tenant's object answers 404 (the operator admin: its login redirect);
- no answer contains any of the victim's markers (app id, names), so lists never show its rows;
- writable id fields set to the victim's objects are refused (registered cases expect 400/404);
- after every request the victim's rows are byte-for-byte unchanged and no row anywhere refers to
  another tenant's row.

The number of (pattern, method) pairs walked equals the number the project has and the skip list
is empty: a new URL fails the walk until its app registers what it needs.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from django.apps import apps
from django.db import connection, models
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import service_role, testing
from accounts.scoping import TenantOwnedModel
from tests.isolation import Case, Ctx, load

SKIP: list[tuple[str, str]] = []  # must stay empty
IGNORED_METHODS = {"OPTIONS", "HEAD", "TRACE"}


def walk_patterns(resolver=None, prefix="", namespace=None):
    resolver = resolver or get_resolver()
    for item in resolver.url_patterns:
        if isinstance(item, URLResolver):
            ns = namespace
            if item.namespace:
                ns = f"{namespace}:{item.namespace}" if namespace else item.namespace
            yield from walk_patterns(item, prefix + str(item.pattern), ns)
        elif isinstance(item, URLPattern):
            name = item.name and (f"{namespace}:{item.name}" if namespace else item.name)
            yield prefix + str(item.pattern), name, item.callback, namespace


def methods_of(callback) -> list[str]:
    if getattr(callback, "actions", None):  # DRF viewset route
        return sorted(m.upper() for m in callback.actions if m.upper() not in IGNORED_METHODS)
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is not None:
        return sorted(
            m.upper()
            for m in view_class.http_method_names
            if hasattr(view_class, m) and m.upper() not in IGNORED_METHODS
        )
    declared = getattr(callback, "http_methods", None)
    return list(declared) if declared else ["GET", "POST"]


def project_pairs():
    pairs = []
    for route, name, callback, namespace in walk_patterns():
        for method in methods_of(callback):
            pairs.append((route, name, callback, namespace, method))
    return pairs


def tenant_models():
    return [m for m in apps.get_models() if issubclass(m, TenantOwnedModel)]


def existing(model) -> bool:
    return model._meta.db_table in connection.introspection.table_names()


def fingerprint(tenant) -> str:
    digest = hashlib.sha256()
    for model in tenant_models():
        if existing(model):
            rows = model.objects.filter(**{model.tenant_field: tenant.pk}).order_by("pk")
            digest.update(json.dumps(list(rows.values_list()), default=str).encode())
    user_rows = (
        apps.get_model("auth", "User")
        .objects.filter(memberships__tenant=tenant)
        .order_by("pk")
        .values_list("pk", "password", "is_active")
    )
    digest.update(json.dumps(list(user_rows), default=str).encode())
    return digest.hexdigest()


def cross_tenant_references() -> list[str]:
    found = []
    for model in tenant_models():
        if not existing(model):
            continue
        for f in model._meta.get_fields():
            if not (
                isinstance(f, models.ForeignKey) and issubclass(f.related_model, TenantOwnedModel)
            ):
                continue
            if f.name == model.tenant_field or not existing(f.related_model):
                continue
            target_tenant = f"{f.name}__{f.related_model.tenant_field}"
            bad = model.objects.exclude(**{f"{target_tenant}__isnull": True}).exclude(
                **{target_tenant: models.F(model.tenant_field)}
            )
            if f.null:
                bad = bad.exclude(**{f"{f.name}__isnull": True})
            if bad.exists():
                found.append(f"{model._meta.label}.{f.name}")
    return found


def model_key(name: str | None, route: str = "") -> str | None:
    """The model behind an admin URL: from its name ("<site>:<app>_<model>_<view>") or, for
    the unnamed object redirect, from its route ("<site>/<app>/<model>/<path:object_id>/")."""
    _, _, rest = (name or "").partition(":")
    parts = route.split("/")
    for model in apps.get_models():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if rest and rest.startswith(prefix):
            return model._meta.label_lower
        if (
            not name
            and len(parts) > 2
            and parts[1:3] == [model._meta.app_label, model._meta.model_name]
        ):
            return model._meta.label_lower
    return None


def router_basename(name: str) -> str:
    base = name.rsplit("-", 1)[0]
    return base


def plan(reg, ctx, route, name, callback, namespace, method):
    """(kwargs, body, query, expected statuses, needs_victim) or a string saying what is
    missing from the registry."""
    explicit = reg.cases.get((name, method))
    case = explicit or Case()
    converters = [p.split(">")[0].split(":")[-1] for p in route.split("<")[1:]]
    converters = [c for c in converters if c != "format"]
    kwargs = {}
    victim_in_url = False
    if case.kwargs is not None:
        kwargs = case.kwargs(ctx)
    elif converters:
        if namespace in ("admin", "tenant_admin"):
            key = model_key(name, route)
            if key is None:  # site-level views (app index, view_on_site, ...)
                if "app_label" in converters:
                    kwargs["app_label"] = "accounts"
                if "content_type_id" in converters:
                    from django.contrib.contenttypes.models import ContentType

                    kwargs["content_type_id"] = ContentType.objects.get_for_model(ctx.v["sub"]).pk
                    kwargs["object_id"] = ctx.v["sub"].pk
                    victim_in_url = True
                if "url" in converters:
                    kwargs["url"] = "nowhere/"
            else:
                builder = reg.victim_objects.get(key)
                model = apps.get_model(key)
                if builder is None and issubclass(model, TenantOwnedModel):
                    return f"no victim object for {key} (reg.objects)"
                if builder is None:  # a platform row: only operators see it at all
                    obj = model.objects.order_by("pk").first()
                    kwargs["object_id"] = obj.pk if obj is not None else 1
                else:
                    kwargs["object_id"] = builder(ctx).pk
                    victim_in_url = True
                for conv in converters:  # e.g. <id> of the user password page
                    kwargs.setdefault(conv, kwargs["object_id"])
                if namespace == "admin":
                    victim_in_url = True  # the outsider is no operator: login redirect
        elif namespace is None and callback.__module__.startswith("rest_framework"):
            return "?"
        else:
            key = router_basename(name or "")
            lookup = reg.own_objects if case.own_url else reg.victim_objects
            builder = lookup.get(key)
            if builder is None:
                return f"no {'own' if case.own_url else 'victim'} object for {key}"
            obj = builder(ctx)
            if isinstance(obj, dict):  # the app gives the URL kwargs itself
                kwargs.update(obj)
            else:
                view_cls = getattr(callback, "cls", None)
                field = getattr(view_cls, "lookup_field", "pk")
                url_kwarg = getattr(view_cls, "lookup_url_kwarg", None) or field
                kwargs[url_kwarg] = getattr(obj, field)
            victim_in_url = not case.own_url
    is_api = route.startswith("api/")
    is_admin = namespace in ("admin", "tenant_admin")
    if (
        method in ("POST", "PUT", "PATCH")
        and explicit is None
        and not is_admin
        and not (victim_in_url)
    ):
        return f"no body for {name} {method} (reg.case)"
    if explicit is None and not (is_api or is_admin):
        return f"no case for web page {name} {method} (reg.case)"
    expect = case.expect
    if expect is None and victim_in_url:
        expect = {302} if namespace == "admin" else {404}
    body = case.body(ctx) if case.body else {}
    if is_admin and method == "POST" and not body:
        body = admin_body(reg, ctx, name)
    query = case.query(ctx) if callable(case.query) else case.query
    return kwargs, body, query, expect


def admin_body(reg, ctx, name):
    """An admin form post: every FK to a tenant-owned model points at the victim's object."""
    key = model_key(name)
    if key is None:
        return {}
    model = apps.get_model(key)
    body = {}
    for f in model._meta.get_fields():
        if isinstance(f, models.ForeignKey):
            builder = reg.victim_objects.get(f.related_model._meta.label_lower)
            if builder is not None and builder(ctx) is not None:
                body[f.name] = builder(ctx).pk
    return body


def fill(route: str, kwargs: dict) -> str:
    def regex_group(match):
        key = match.group(1)
        return str(kwargs.get(key, "json" if key == "format" else ""))

    out = re.sub(r"\(\?P<(\w+)>[^)]*\)", regex_group, route)
    out = out.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\.", ".")
    for piece in out.split("<")[1:]:
        raw = piece.split(">")[0]
        key = raw.split(":")[-1]
        value = kwargs.get(key, "json" if key == "format" else None)
        if value is None:
            raise KeyError(f"{route}: no value for <{raw}>")
        if raw.startswith("drf_format_suffix"):
            value = f".{value}"
        out = out.replace(f"<{raw}>", str(value))
    return "/" + out.replace("/?", "/")


@pytest.mark.django_db
def test_every_url_is_walked_and_sealed(owner, outsider, client, settings):
    settings.EMS_HEALTH_PING_TIMEOUT = 1
    reg = load()
    ctx = Ctx(victim=owner, outsider=outsider)
    for step in reg.setups:
        step(ctx)
    pairs = project_pairs()
    assert SKIP == []
    problems, walked = [], 0
    before = fingerprint(owner.tenant)
    # a crash is reported with the rest (as a 500), not raised
    outsider.api.raise_request_exception = outsider.client.raise_request_exception = False
    for route, name, callback, namespace, method in pairs:
        planned = plan(reg, ctx, route, name, callback, namespace, method)
        if isinstance(planned, str):
            problems.append(f"{route} {method} [{name}]: {planned}")
            continue
        kwargs, body, query, expect = planned
        try:
            url = fill(route, kwargs) + (f"?{query}" if query else "")
        except KeyError as exc:
            problems.append(f"{route} {method} [{name}]: {exc} (reg.case kwargs)")
            continue
        api = outsider.api
        if route.startswith("api/"):
            res = getattr(api, method.lower())(url, body, format="json")
        else:
            res = getattr(outsider.client, method.lower())(url, body)
        walked += 1
        text = res.content.decode(errors="replace") if not getattr(res, "streaming", False) else ""
        where = f"{method} {url} [{name}] -> {res.status_code}"
        if res.status_code >= 500:
            problems.append(f"{where}: server error")
        if expect is not None and res.status_code not in expect:
            problems.append(f"{where}: expected {sorted(expect)}")
        leaked = [m for m in ctx.markers if m in text]
        if leaked:
            problems.append(f"{where}: shows {leaked}")
        if fingerprint(owner.tenant) != before:
            problems.append(f"{where}: changed the victim's rows")
            before = fingerprint(owner.tenant)
        crossed = cross_tenant_references()
        if crossed:
            problems.append(f"{where}: cross-tenant reference in {crossed}")
        # The outsider keeps its own consent: a walked "revoke" must not turn every later
        # storage case into a 403 about its own tenant instead of a test of the victim's.
        if not service_role.is_authorized(outsider.tenant):
            testing.authorize(outsider.tenant)
        # the outsider stays logged in with its own membership
        if "logout" in (name or ""):
            outsider.api.force_login(outsider.user)
            outsider.client.force_login(outsider.user)
            outsider.api.raise_request_exception = False
            outsider.client.raise_request_exception = False
    assert not problems, "\n".join(problems)
    assert walked == len(pairs) == len({(p[0], p[4]) for p in pairs})


@pytest.mark.django_db
def test_an_unregistered_url_fails_the_walk(owner, outsider):
    """A page no app registered is reported, not skipped (here: the accounts pages with an
    empty registry)."""
    from tests.isolation import Registry

    ctx = Ctx(victim=owner, outsider=outsider)
    pairs = [p for p in project_pairs() if p[1] == "accounts:sub-account"]
    assert pairs
    for route, name, callback, namespace, method in pairs:
        problem = plan(Registry(), ctx, route, name, callback, namespace, method)
        assert isinstance(problem, str) and problem.startswith("no "), problem
