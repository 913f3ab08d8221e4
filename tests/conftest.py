"""Project-wide test helpers: the rule that a missing real part is a failure in CI.

Under ``EMS_REQUIRE_SERVICES=1`` (CI) a run fails when
- a real service a test needs is missing (``service_missing`` fails the test instead of skipping),
- the database is not PostgreSQL (checked once, before any test runs),
- any test was skipped, for whatever reason: the skipped tests and their reasons are printed and
  the exit status is set to "tests failed". (``xfail`` is not a skip: a strict ``xfail`` fails
  by itself when the test unexpectedly passes.)
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
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


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared test models (``EMS_TESTDATA``, default ``../shared/testdata``)."""
    from tests.testdata import require_testdata

    return require_testdata()


def require_module(name: str) -> None:
    """A library the test exercises for real (TensorFlow, OpenVINO): missing fails in CI."""
    import importlib.util

    if importlib.util.find_spec(name) is None:
        service_missing(f"the Python package {name!r} is not installed")


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


# --- EMS_REQUIRE_SERVICES: no PostgreSQL, or any skip, fails the run -------------------------
def database_vendor_problem() -> str | None:
    """Why the configured database is not the real one (``None`` when it is PostgreSQL)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None  # a Django-free suite (-p no:django): no database in play
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        return (
            f"the database is {engine}, not PostgreSQL: set DATABASE_URL=postgres://… "
            "(the concurrency and worker tests need a database a second process can share)"
        )
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SERVICES:
        problem = database_vendor_problem()
        if problem:
            raise pytest.UsageError(f"EMS_REQUIRE_SERVICES=1: {problem}")


_SKIPPED: list[tuple[str, str]] = []


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPPED.append((report.nodeid or "<collection>", _skip_reason(report)))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if REQUIRE_SERVICES and _SKIPPED:
        terminalreporter.section("skipped under EMS_REQUIRE_SERVICES=1: the run fails", red=True)
        for nodeid, reason in _SKIPPED:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}", red=True)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REQUIRE_SERVICES and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
