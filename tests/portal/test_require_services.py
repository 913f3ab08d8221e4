"""``EMS_REQUIRE_SERVICES=1`` (CI): a skipped test or a database other than PostgreSQL fails the
run. Each case runs pytest in a child process on a tiny suite with the project's hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import pytest


def test_passes():
    assert True


def test_needs_something():
    pytest.skip("the thing is missing")


@pytest.mark.xfail(strict=True, reason="a known bug")
def test_known_bug():
    assert False
"""

HOOKS = """
from tests.conftest import (  # the project's hooks, as the real suite has them
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
)
"""


def run_suite(tmp_path: Path, *, require: bool, django: bool = False, **env: str):
    (tmp_path / "test_probe.py").write_text(SUITE if not django else "def test_ok():\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's addopts
    (tmp_path / "conftest.py").write_text(HOOKS)
    child = {k: v for k, v in os.environ.items() if k != "EMS_REQUIRE_SERVICES"}
    if not django:
        child.pop("DJANGO_SETTINGS_MODULE", None)
    child.update(env, PYTHONPATH=str(ROOT))
    if require:
        child["EMS_REQUIRE_SERVICES"] = "1"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    if not django:
        argv += ["-p", "no:django"]
    return subprocess.run(
        [*argv, "-q", str(tmp_path)],
        cwd=tmp_path,
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skip_fails_the_run_and_is_named_with_its_reason(tmp_path):
    result = run_suite(tmp_path, require=True)
    assert result.returncode == 1, result.stdout
    assert "skipped under EMS_REQUIRE_SERVICES=1" in result.stdout
    assert "SKIPPED test_probe.py::test_needs_something: the thing is missing" in result.stdout
    assert "test_known_bug" not in result.stdout.split("EMS_REQUIRE_SERVICES=1")[1]  # xfail ≠ skip


def test_without_the_flag_a_skip_is_only_a_skip(tmp_path):
    result = run_suite(tmp_path, require=False)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout


def test_a_database_other_than_postgresql_fails_the_run(tmp_path):
    result = run_suite(
        tmp_path,
        require=True,
        django=True,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="portal.settings",
    )
    assert result.returncode == 4, result.stdout + result.stderr  # a usage error: nothing ran
    assert "not PostgreSQL" in result.stdout + result.stderr


def test_postgresql_passes_the_database_check(tmp_path):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        from tests.conftest import service_missing

        service_missing("DATABASE_URL does not point at PostgreSQL")
    result = run_suite(
        tmp_path, require=True, django=True, DJANGO_SETTINGS_MODULE="portal.settings"
    )
    assert result.returncode == 0, result.stdout + result.stderr
