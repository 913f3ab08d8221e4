"""JSON nested 1,000+ levels deep is a 400 with a clear message on every API and form that
parses JSON, never a 500 (RecursionError)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from portal import jsonlimits

pytestmark = pytest.mark.django_db

DEPTHS = (65, 1_000, 5_000, 100_000)


def nested(depth: int, key: str = "a") -> str:
    """``{"a": {"a": ... [] ...}}`` built as text, so no recursion is needed to make it."""
    return f'{{"{key}": ' * (depth - 1) + "[]" + "}" * (depth - 1)


def deep_field(depth: int, field: str) -> str:
    return f'{{"{field}": ' + nested(depth) + "}"


def assert_too_deep(response) -> None:
    assert response.status_code == 400, response.content[:300]
    assert "nested deeper than 64 levels" in response.json()["detail"]


@pytest.mark.parametrize("depth", DEPTHS)
def test_signup_needs_no_login_and_answers_400(depth):
    response = APIClient().post(
        "/api/v1/auth/signup/", deep_field(depth, "username"), content_type="application/json"
    )
    assert_too_deep(response)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("path", ["/api/v1/services/", "/api/v1/policies/"])
def test_authenticated_apis_answer_400(owner, path, depth):
    field = "document" if "policies" in path else "autoscale"
    response = owner.api.post(path, deep_field(depth, field), content_type="application/json")
    assert_too_deep(response)


def test_a_top_level_array_nested_deep_is_refused_too(owner):
    body = "[" * 3_000 + "]" * 3_000
    assert_too_deep(owner.api.post("/api/v1/policies/", body, content_type="application/json"))


def test_shallow_documents_still_parse(owner):
    response = owner.api.post(
        "/api/v1/policies/",
        {
            "name": "shallow",
            "document": {
                "statement": [{"effect": "allow", "action": ["ems:*"], "resource": ["*"]}]
            },
        },
        format="json",
    )
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("depth", (1_000, 100_000))
def test_policy_page_form_shows_an_error(owner, depth):
    response = owner.client.post("/accounts/policies/", {"name": "deep", "document": nested(depth)})
    assert response.status_code == 200
    assert "nested deeper than 64 levels" in response.content.decode()


@pytest.mark.parametrize("depth", (1_000, 100_000))
def test_tenant_admin_policy_form_shows_an_error(owner, depth):
    response = owner.client.post(
        "/tenant-admin/accounts/policy/add/", {"name": "deep", "document": nested(depth)}
    )
    assert response.status_code == 200
    assert "nested deeper than 64 levels" in response.content.decode()


def test_check_depth_is_iterative():
    value: list = []
    for _ in range(200_000):
        value = [value]
    with pytest.raises(jsonlimits.JSONTooDeep):
        jsonlimits.check_depth(value, 64)
    assert jsonlimits.check_depth({"a": [{"b": [1, 2]}]}, 4) == {"a": [{"b": [1, 2]}]}
    with pytest.raises(jsonlimits.JSONTooDeep):
        jsonlimits.check_depth({"a": [{"b": [1, 2]}]}, 3)


@pytest.mark.parametrize("depth", (1_000, 100_000))
def test_a_deep_angel_meta_in_a_model_folder_is_a_validation_problem(depth):
    """Model files are JSON too: a deep one is reported like any undecodable file."""
    import struct

    from models_repo.validation.formats import decode_angel_meta

    text = nested(depth).encode()
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        decode_angel_meta(struct.pack(">i", len(text)) + text)
