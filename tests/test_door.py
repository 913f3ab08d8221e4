"""The one door (``accounts.door``, ``accounts.api.base``): every route declares the action it
needs, and every app answers with the same IAM semantics.

- ``test_every_route_declares_its_action`` walks the URL resolver — every API route of the
  router and every web page — and fails on one that declares no catalogue action for a method it
  answers (or names an action the catalogue does not have), unless it carries an explicit,
  justified public marker. A new endpoint cannot ship unchecked.
- ``test_iam_semantics_table`` asks a representative endpoint of each app (API and page, list,
  create, read one, act on one) as a sub-account with no policy, a read-only and a full
  sub-account, the main account, the outsider (another tenant) and a user in no tenant.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from accounts import catalogue, services, testing
from accounts.api.base import ScopedViewSet
from accounts.door import By
from tests.isolation import Ctx, load
from tests.test_isolation import IGNORED_METHODS, walk_patterns

# Routes the project does not decorate itself, each with the reason it needs no action.
PUBLIC_ROUTES = {
    "home": "the product's landing page, the same for everyone",
    "healthz": "liveness and readiness probe: no tenant data",
    "schema": "the OpenAPI description of the API: no tenant data",
    "swagger-ui": "the API browser over the schema: no tenant data",
    "api-root": "DRF's index of the API's collections: no tenant data",
    "accounts:password-reset": "Django's password reset by email: anonymous by design",
    "accounts:password-reset-done": "Django's password reset: a static confirmation",
    "accounts:password-reset-confirm": "Django's password reset: the emailed token authorizes",
    "accounts:password-reset-complete": "Django's password reset: a static confirmation",
}
# Admin sites answer for themselves: AdminSite.has_permission on every view.
ADMIN_SITES = {
    "admin": "the operator console: staff users only (AdminSite.has_permission)",
    "tenant_admin": "a main account's own admin: TenantAdminSite.has_permission",
}


def _names(spec) -> list[str]:
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, By):
        return spec.names()
    if isinstance(spec, dict):
        return [n for value in spec.values() for n in _names(value)]
    return []  # a function choosing among actions: checked when it runs


def route_problems() -> tuple[list[str], int]:
    problems, checked = [], 0
    for route, name, callback, namespace in walk_patterns():
        where = f"/{route} [{name}]"
        if namespace in ADMIN_SITES:
            continue
        view_cls = getattr(callback, "cls", None)
        actions = getattr(callback, "actions", None)
        if actions and view_cls is not None:  # a DRF viewset route
            if not issubclass(view_cls, ScopedViewSet):
                problems.append(f"{where}: {view_cls.__name__} is not an accounts ScopedViewSet")
                continue
            for method, drf_action in actions.items():
                if method.upper() in IGNORED_METHODS:
                    continue
                checked += 1
                spec = view_cls.required_actions.get(drf_action)
                if isinstance(spec, dict):
                    spec = spec.get(method.upper())
                reason = view_cls.public_actions.get(drf_action, "")
                if spec is None and not reason.strip():
                    problems.append(f"{where} {method.upper()}: {drf_action} declares no action")
                problems += [
                    f"{where}: {n} is not in the catalogue"
                    for n in _names(spec)
                    if catalogue.get_action(n) is None
                ]
            continue
        if name in PUBLIC_ROUTES or (name or "").endswith("api-root"):
            checked += 1
            continue
        methods = getattr(callback, "http_methods", None)
        declared = getattr(callback, "door_actions", None)
        public = getattr(callback, "door_public", None)
        if methods is None or (declared is None and public is None):
            problems.append(f"{where}: a page not decorated with accounts.door.page")
            continue
        for method in methods:
            checked += 1
            spec = (declared or {}).get(method)
            if spec is None and not (public or "").strip():
                problems.append(f"{where} {method}: no action and no public reason")
            problems += [
                f"{where}: {n} is not in the catalogue"
                for n in _names(spec)
                if catalogue.get_action(n) is None
            ]
    return problems, checked


def test_every_route_declares_its_action():
    problems, checked = route_problems()
    assert problems == []
    assert checked > 60  # the walk saw the project's API and pages


def test_the_walk_catches_an_undeclared_page_and_viewset_action(monkeypatch):
    from serving import api
    from serving.views import service_list

    monkeypatch.delitem(api.ServiceViewSet.required_actions, "stop")
    monkeypatch.setattr(service_list, "door_actions", {})
    monkeypatch.setattr(service_list, "door_public", None)
    problems, _ = route_problems()
    assert any("stop declares no action" in p for p in problems)
    assert any("[serving:service-list] GET: no action" in p for p in problems)


# --- the semantics table ---------------------------------------------------------------------
ACTORS = ("none", "read", "full", "owner", "outsider", "nobody")


def _policy(tenant, name, actions):
    owner = tenant.memberships.get(kind="main")
    return services.policy_create(
        actor=owner,
        name=name,
        document={"statement": [{"effect": "allow", "action": actions, "resource": "*"}]},
    )


def _world(member):
    return testing.world(member)


@pytest.fixture
def table_ctx(owner, outsider):
    reg = load()
    ctx = Ctx(victim=owner, outsider=outsider)
    for step in reg.setups:
        step(ctx)
    _policy(owner.tenant, "ReadAll", ["*:Describe*", "*:List*"])
    _policy(owner.tenant, "Everything", ["*"])
    nobody = get_user_model().objects.create_user("nobody", "nobody@example.com", "x" * 12)
    worlds = {
        "none": _world(testing.make_sub_account(owner.tenant, name="none", policies=())),
        "read": _world(testing.make_sub_account(owner.tenant, name="read", policies=["ReadAll"])),
        "full": _world(
            testing.make_sub_account(owner.tenant, name="full", policies=["Everything"])
        ),
        "owner": owner,
        "outsider": outsider,
    }
    api, client = APIClient(), Client()
    api.force_login(nobody)
    client.force_login(nobody)
    return ctx, worlds, (api, client)


def api_rows(ctx):
    """(method, url, body, action, on an object of the victim tenant); a write's body is
    invalid, so an actor allowed to act gets 400 — proof that authorization came first."""
    v = ctx.v
    sid, pk, config = v["service"].service_id, v["policy"].pk, v["config"].pk
    return [
        # accounts
        ("GET", "/api/v1/policies/", None, "accounts:ListPolicies", False),
        ("POST", "/api/v1/policies/", {}, "accounts:CreatePolicy", False),
        ("GET", f"/api/v1/policies/{pk}/", None, "accounts:DescribePolicy", True),
        ("PATCH", f"/api/v1/policies/{pk}/", {"document": "x"}, "accounts:UpdatePolicy", True),
        # models_repo
        ("GET", "/api/v1/model-configs/", None, "ems:DescribeModelConfigs", False),
        ("POST", "/api/v1/runtimes/", {}, "ems:CreateRuntime", False),
        ("GET", f"/api/v1/model-configs/{config}/", None, "ems:DescribeModelConfig", True),
        (
            "POST",
            f"/api/v1/model-configs/{config}/versions/",
            {},
            "ems:CreateModelConfigVersion",
            True,
        ),
        # serving
        ("GET", "/api/v1/services/", None, "ems:DescribeServices", False),
        ("POST", "/api/v1/services/", {}, "ems:CreateService", False),
        ("GET", f"/api/v1/services/{sid}/", None, "ems:DescribeService", True),
        ("POST", f"/api/v1/services/{sid}/scale/", {"replicas": 0}, "ems:ScaleService", True),
    ]


def expected_api(action: str, on_object: bool, actor: str) -> tuple[int, str | None]:
    """The IAM answer (status, the action a 403 must name) for one actor."""
    write = catalogue.get_action(action).access == "write"
    if actor == "nobody":  # logged in, but in no tenant
        return 403, None
    if actor == "outsider" and on_object:  # another tenant's object
        return 404, None
    if actor == "none" or (actor == "read" and write):  # no permission for the action
        return 403, action
    return (400 if write else 200), None


@pytest.mark.django_db
def test_iam_semantics_table(table_ctx):
    ctx, worlds, (nobody_api, nobody_client) = table_ctx
    problems, asked = [], 0
    for method, url, body, action, on_object in api_rows(ctx):
        for actor in ACTORS:
            api = nobody_api if actor == "nobody" else worlds[actor].api
            res = getattr(api, method.lower())(url, body, format="json")
            asked += 1
            status, named = expected_api(action, on_object, actor)
            where = f"API {actor:8} {method} {url}"
            if res.status_code != status:
                problems.append(f"{where}: {res.status_code}, expected {status}: {res.content!r}")
                continue
            if status in (403, 404):
                data = res.json()
                assert set(data) >= {"detail", "code"}, (where, data)  # the one error body
            if named:
                data = res.json()
                if data.get("action") != named or named not in data["detail"]:
                    problems.append(f"{where}: 403 does not name {named}: {data}")
    for method, url, body, expect, action in page_rows(ctx):
        for actor in ACTORS:
            client = nobody_client if actor == "nobody" else worlds[actor].client
            res = getattr(client, method.lower())(url, body or {})
            asked += 1
            status = expect[actor]
            where = f"page {actor:8} {method} {url}"
            if res.status_code != status:
                problems.append(f"{where}: {res.status_code}, expected {status}")
                continue
            if status == 302 and actor == "none":
                assert res["Location"].endswith("/accounts/restricted/"), where
            if (
                status == 403
                and actor != "nobody"
                and action
                and action.encode() not in res.content
            ):
                problems.append(f"{where}: the 403 page does not name {action}")
    assert problems == [], "\n".join(problems)
    assert asked == (len(api_rows(ctx)) + len(page_rows(ctx))) * len(ACTORS)


def page_rows(ctx):
    v = ctx.v
    sid = v["service"].service_id
    listing = dict(none=302, read=200, full=200, owner=200, outsider=200, nobody=403)
    one = dict(none=302, read=200, full=200, owner=200, outsider=404, nobody=403)
    write_one = dict(none=302, read=403, full=200, owner=200, outsider=404, nobody=403)
    acted = dict(none=302, read=403, full=302, owner=302, outsider=404, nobody=403)
    pk, config = v["policy"].pk, v["config"].pk
    return [
        ("GET", "/accounts/policies/", None, listing, None),
        ("GET", f"/accounts/policies/{pk}/", None, one, None),
        ("POST", f"/accounts/policies/{pk}/", {"name": ""}, write_one, "accounts:UpdatePolicy"),
        ("GET", "/models/", None, listing, None),
        ("GET", f"/models/{config}/", None, one, None),
        (
            "GET",
            f"/models/{config}/versions/new/",
            None,
            write_one,
            "ems:CreateModelConfigVersion",
        ),
        ("GET", "/services/", None, listing, None),
        ("GET", f"/services/{sid}/", None, one, None),
        ("POST", f"/services/{sid}/scale/", {}, acted, "ems:ScaleService"),
        (
            "POST",
            f"/services/{sid}/no-such-button/",
            {},
            dict(none=302, read=404, full=404, owner=404, outsider=404, nobody=403),
            None,
        ),
    ]


@pytest.mark.django_db
def test_options_and_unrouted_methods_answer_as_drf_does(owner):
    assert owner.api.options("/api/v1/services/").status_code == 200
    assert owner.api.put("/api/v1/services/", {}, format="json").status_code == 405
