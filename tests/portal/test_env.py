"""Settings come from environment variables; bad values stop start-up with a clear message."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import Env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("0", False), ("off", False), ("", False)],
)
def test_bool_accepts_common_spellings(value, expected):
    assert Env({"X": value}).bool("X") is expected


def test_bool_rejects_other_words():
    with pytest.raises(ImproperlyConfigured, match=r"X='maybe' is not a boolean"):
        Env({"X": "maybe"}).bool("X")


def test_int_bounds_and_type():
    assert Env({"N": " 42 "}).int("N", 1) == 42
    assert Env({}).int("N", 7) == 7
    with pytest.raises(ImproperlyConfigured, match="is not an integer"):
        Env({"N": "4x"}).int("N", 1)
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 10"):
        Env({"N": "3"}).int("N", 1, minimum=10)
    with pytest.raises(ImproperlyConfigured, match="above the maximum of 5"):
        Env({"N": "6"}).int("N", 1, maximum=5)


def test_choice_lists_the_allowed_values():
    with pytest.raises(ImproperlyConfigured, match="is not one of: docker, process"):
        Env({"B": "podman"}).choice("B", ("docker", "process"), "process")
    assert Env({}).choice("B", ("docker", "process"), "process") == "process"


def test_url_checks_scheme_and_host():
    env = Env({"U": "mysql://db/x", "H": "redis://", "OK": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ImproperlyConfigured, match="has scheme 'mysql'"):
        env.url("U", schemes=("postgres", "sqlite"))
    with pytest.raises(ImproperlyConfigured, match="names no host"):
        env.url("H", schemes=("redis",))
    assert env.url("OK", schemes=("redis",)) == "redis://127.0.0.1:6379/0"


def test_list_splits_on_commas():
    assert Env({"L": "a, b,,c "}).list("L") == ["a", "b", "c"]


def _import_settings(**overrides: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EMS_", "DATABASE_", "REDIS_", "CELERY_"))
        and key not in {"DEBUG", "SECRET_KEY"}
    }
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "SECRET_KEY must be set when DEBUG is off"),
        ({"SECRET_KEY": "k" * 50}, "EMS_SECRETS_KEY must be set when DEBUG is off"),
        ({"DEBUG": "1", "EMS_RUNTIME_BACKEND": "podman"}, "EMS_RUNTIME_BACKEND='podman'"),
        ({"DEBUG": "1", "EMS_RUNTIME_BACKEND": "kubernetes"}, "kubernetes is not available yet"),
        ({"DEBUG": "1", "DATABASE_URL": "mysql://x/y"}, "DATABASE_URL has scheme 'mysql'"),
        ({"DEBUG": "1", "EMS_STORAGE_BACKEND": "s3"}, "EMS_STORAGE_BACKEND=s3 needs EMS_S3"),
        ({"DEBUG": "1", "EMS_SECRETS_KEY": "short"}, "EMS_SECRETS_KEY is not a Fernet key"),
        ({"DEBUG": "perhaps"}, "DEBUG='perhaps' is not a boolean"),
    ],
)
def test_bad_settings_stop_startup_with_a_clear_message(overrides, message, tmp_path):
    result = _import_settings(EMS_DATA_DIR=str(tmp_path), **overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_embedded_default_needs_nothing_but_debug(tmp_path):
    result = _import_settings(
        DEBUG="1",
        EMS_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
