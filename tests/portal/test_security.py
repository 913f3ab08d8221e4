"""Secure defaults: rate limits (429 + Retry-After), security headers, ``check --deploy``."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.urls import reverse

from accounts import testing

ROOT = Path(__file__).resolve().parents[2]
RATES = {
    "api": "1000/minute",
    "api_anon": "1000/minute",
    "login": "1000/minute",
    "signup": "1000/minute",
    "sensitive": "1000/minute",
}


@pytest.fixture
def rates(settings, monkeypatch):
    """Lower one scope's rate: ``rates(login="2/minute")``. The limiter's clock stands still
    for the test: its windows are fixed (a minute from :00), and a test's requests straddling
    a boundary would start a new window and not be limited (seen once in CI, on a busy run)."""
    from types import SimpleNamespace

    from accounts import throttles

    frozen = time.time()
    monkeypatch.setattr(throttles, "time", SimpleNamespace(time=lambda: frozen))

    def lower(**scopes):
        settings.EMS_THROTTLE_RATES = {**RATES, **scopes}

    lower()
    return lower


def _retry_after(response) -> int:
    value = int(response["Retry-After"])
    assert 1 <= value <= 60
    return value


def test_web_login_is_limited_per_ip_and_per_username(client, owner, rates):
    rates(login="3/minute")
    url = reverse("accounts:login")
    for _ in range(3):
        assert client.post(url, {"username": owner.user.username, "password": "bad"}).status_code
    refused = client.post(url, {"username": owner.user.username, "password": testing.PASSWORD})
    assert refused.status_code == 429 and _retry_after(refused)
    assert b"Too many requests" in refused.content
    # per username: the same name from another address is refused too
    other_ip = client.post(
        url,
        {"username": owner.user.username, "password": testing.PASSWORD},
        REMOTE_ADDR="10.9.8.7",
    )
    assert other_ip.status_code == 429
    # another username from another address still logs in
    ok = client.post(url, {"username": "someone-else", "password": "bad"}, REMOTE_ADDR="10.9.8.6")
    assert ok.status_code == 200


def test_api_basic_auth_tries_are_limited_before_the_password_is_checked(owner, rates):
    from rest_framework.test import APIClient

    rates(login="2/minute")
    api = APIClient()
    wrong = base64.b64encode(f"{owner.user.username}:wrong".encode()).decode()
    for _ in range(2):
        response = api.post(
            "/api/v1/auth/api-keys/", {"name": "k"}, HTTP_AUTHORIZATION=f"Basic {wrong}"
        )
        assert response.status_code == 401
    right = base64.b64encode(f"{owner.user.username}:{testing.PASSWORD}".encode()).decode()
    response = api.post(
        "/api/v1/auth/api-keys/", {"name": "k"}, HTTP_AUTHORIZATION=f"Basic {right}"
    )
    assert response.status_code == 429 and _retry_after(response)
    assert "Too many requests" in response.json()["detail"]


def test_signup_is_limited_per_ip_web_and_api(client, presets, rates):
    rates(signup="1/hour")
    body = {"username": "newbie", "email": "newbie@example.com", "password": "Sturdy-Pass-99!"}
    assert (
        client.post("/api/v1/auth/signup/", body, content_type="application/json").status_code
        == 201
    )
    again = {**body, "username": "newbie2", "email": "newbie2@example.com"}
    api = client.post("/api/v1/auth/signup/", again, content_type="application/json")
    assert api.status_code == 429 and int(api["Retry-After"]) >= 1
    web = client.post(reverse("accounts:signup"), again)
    assert web.status_code == 429 and int(web["Retry-After"]) >= 1


def test_api_key_creation_is_limited_per_account(owner, rates):
    rates(sensitive="2/minute")
    for n in range(2):
        assert owner.api.post("/api/v1/auth/api-keys/", {"name": f"k{n}"}).status_code == 201
    refused = owner.api.post("/api/v1/auth/api-keys/", {"name": "k9"})
    assert refused.status_code == 429 and _retry_after(refused)
    # the web page counts in the same scope
    web = owner.client.post(reverse("accounts:api-keys"), {"name": "web"})
    assert web.status_code == 429


def test_the_api_as_a_whole_is_limited_per_account(owner, outsider, rates):
    rates(api="3/minute")
    for _ in range(3):
        assert owner.api.get("/api/v1/policies/").status_code == 200
    refused = owner.api.get("/api/v1/policies/")
    assert refused.status_code == 429 and _retry_after(refused)
    assert outsider.api.get("/api/v1/policies/").status_code == 200  # another account


def test_bad_rate_setting_is_refused_at_start():
    from django.core.exceptions import ImproperlyConfigured

    from portal.env import Env

    with pytest.raises(ImproperlyConfigured, match="EMS_THROTTLE_LOGIN"):
        Env({"EMS_THROTTLE_LOGIN": "ten a minute"}).rate("EMS_THROTTLE_LOGIN", "10/minute")
    assert Env({}).rate("EMS_THROTTLE_LOGIN", "10/minute") == "10/minute"


def test_pages_carry_security_headers(client, owner):
    response = owner.client.get(reverse("accounts:dashboard"))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "camera=()" in response["Permissions-Policy"]


def test_inline_scripts_carry_the_request_nonce(owner):
    response = owner.client.get(reverse("models_repo:config-create"))
    assert response.status_code == 200
    nonce = response["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in response.content.decode()


def test_swagger_ui_works_under_the_csp(owner):
    page = owner.client.get(reverse("swagger-ui"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "<script>" not in body  # no inline script: its init code is a same-origin file
    script = owner.client.get(reverse("swagger-ui") + "?script=")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_check_deploy_is_clean_with_the_production_settings_of_env_example(tmp_path):
    from cryptography.fernet import Fernet

    values = _env_example()
    assert values["DEBUG"] == "0" and values["EMS_HTTPS"] == "1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMS_", "DJANGO_"))}
    env.update(values)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            # the two values the file says an operator must replace
            "SECRET_KEY": Fernet.generate_key().decode() + Fernet.generate_key().decode(),
            "EMS_SECRETS_KEY": Fernet.generate_key().decode(),
            "EMS_DATA_DIR": str(tmp_path),
            "EMS_STORAGE_ROOT": str(tmp_path / "storage"),
            "EMS_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    for name in ("DATABASE_URL", "REDIS_URL"):  # what this run's services are
        if name in os.environ:
            env[name] = os.environ[name]
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout
