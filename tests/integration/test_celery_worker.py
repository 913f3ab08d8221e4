"""A real Celery worker consumes from the broker and runs a task end to end: on Redis and on
the embedded filesystem broker, and through the /healthz round trip."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@contextmanager
def celery_worker(env: dict[str, str], queue: str):
    """A worker process of the portal's Celery app, consuming only ``queue``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "-Q",
            queue,
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if os.environ.get("EMS_TEST_VERBOSE"):
            print(out)


def _client_app(broker: str, backend: str, options: dict) -> Celery:
    app = Celery("probe", broker=broker, backend=backend)
    app.conf.broker_transport_options = options
    app.conf.task_serializer = "json"
    return app


def _round_trip(app: Celery, queue: str, timeout: float = 60) -> str:
    nonce = secrets.token_hex(8)
    result = app.send_task("portal.ping", args=[nonce], queue=queue)
    assert result.get(timeout=timeout) == f"pong:{nonce}"
    return nonce


def test_worker_on_redis_runs_a_task(redis_url, tmp_path):
    queue = f"ems-test-{secrets.token_hex(4)}"
    env = {
        "DEBUG": "1",
        "EMS_DATA_DIR": str(tmp_path),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
    }
    with celery_worker(env, queue):
        _round_trip(_client_app(redis_url, redis_url, {}), queue)


def test_worker_on_embedded_broker_runs_a_task(tmp_path):
    queue = f"ems-test-{secrets.token_hex(4)}"
    folder = tmp_path / "broker"
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
    }
    for path in options.values():
        os.makedirs(path, exist_ok=True)
    results = tmp_path / "celery-results"
    results.mkdir()
    env = {"DEBUG": "1", "EMS_DATA_DIR": str(tmp_path)}
    for key in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASE_URL"):
        env[key] = ""
    with celery_worker(env, queue):
        _round_trip(_client_app("filesystem://", f"file://{results}", options), queue)


@pytest.mark.django_db
def test_healthz_round_trip_through_a_real_worker(client, settings):
    """The web process's own broker settings, a worker started with the same environment."""
    settings.EMS_HEALTH_PING_TIMEOUT = 30
    with celery_worker({}, "celery"):
        deadline = time.monotonic() + 60
        while True:
            response = client.get("/healthz")
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["worker"]["ok"] is True
    assert body["checks"]["worker"]["detail"] == "pong"
