"""Project-wide test helpers: the rule that a missing real service is a failure in CI."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

# The accounts fixtures need Django: load them only where pytest-django has configured it, so
# the Django-free suites (runtimes, conformance, gateway) also run with `-p no:django`.
pytest_plugins = ["tests.fixtures_accounts"] if os.environ.get("DJANGO_SETTINGS_MODULE") else []

REQUIRE_SERVICES = os.environ.get("EMS_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}


def service_missing(reason: str) -> None:
    """Skip locally, fail where ``EMS_REQUIRE_SERVICES`` says the real parts must run (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


def tcp_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or os.environ.get("EMS_TEST_REDIS_URL")
    if not url:
        service_missing("no REDIS_URL set")
    if not tcp_open(url, 6379):
        service_missing(f"Redis at {url} does not answer")
    return url


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no Docker here"
        service_missing(f"no Docker engine answers ({exc})")
    return client
