"""Site-wide pages: home, navigation, health without a worker, the schema and the admin."""

import io
import re

import pytest
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_home_renders_with_navigation_of_existing_sections(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<a href="/api/docs/"' in body
    # The operator admin is only offered to staff.
    assert "Operator admin" not in body


def test_staff_see_the_operator_admin_in_the_navigation(client, django_user_model):
    staff = django_user_model.objects.create_user("op", password="x", is_staff=True)
    client.force_login(staff)
    assert "Operator admin" in client.get("/").content.decode()


def test_healthz_without_worker_reports_database_and_broker(client):
    response = client.get("/healthz?worker=0")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker"}
    assert all(check["ok"] for check in body["checks"].values())


def test_healthz_fails_with_503_when_no_worker_answers(client, settings):
    settings.EMS_HEALTH_PING_TIMEOUT = 1
    # A queue no worker consumes: the ping cannot come back.
    from portal.tasks import ping

    original = ping.apply_async

    def to_nowhere(*args, **kwargs):
        return original(*args, queue="ems-test-nobody-listens", **kwargs)

    ping.apply_async = to_nowhere
    try:
        response = client.get("/healthz")
    finally:
        ping.apply_async = original
    assert response.status_code == 503
    worker = response.json()["checks"]["worker"]
    assert worker["ok"] is False
    assert "no worker answered the ping within 1s" in worker["detail"]


def test_openapi_schema_validates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert "openapi: 3" in out.getvalue()


def test_swagger_ui_uses_bundled_assets(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("u", password="x"))
    body = client.get(reverse("swagger-ui")).content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', body)
    names = {asset.rsplit("/", 1)[-1] for asset in assets}
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= names, assets
    # every script and stylesheet comes from our own static files (the sidecar) or the portal
    # itself (the split view's start-up script, so the CSP needs no inline script), no CDN
    own = ("/static/drf_spectacular_sidecar/", reverse("swagger-ui") + "?script=")
    assert all(a.startswith(own) for a in assets), assets
    assert "cdn.jsdelivr" not in body and "unpkg.com" not in body


def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_admin_login_page(client):
    assert client.get("/admin/login/").status_code == 200


def test_bootstrap_is_idempotent(settings, django_user_model):
    settings.DEBUG = True
    for _ in range(2):
        out = io.StringIO()
        call_command("ems_bootstrap", "--demo", stdout=out)
        assert "bootstrap done" in out.getvalue()
    assert django_user_model.objects.filter(username="operator", is_superuser=True).count() == 1


def test_bootstrap_demo_refused_without_debug(settings):
    from django.core.management.base import CommandError

    settings.DEBUG = False
    with pytest.raises(CommandError, match="refused unless DEBUG is on"):
        call_command("ems_bootstrap", "--demo", stdout=io.StringIO())


def test_admin_sites_carry_the_products_name(client, owner, django_user_model):
    login = client.get("/admin/login/").content.decode()
    assert "EMS Portal" in login and "operator console" in login and "portal/admin.css" in login
    index = owner.client.get("/tenant-admin/").content.decode()
    assert "EMS Portal" in index and "account admin" in index
