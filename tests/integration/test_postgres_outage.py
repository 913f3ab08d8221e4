"""PostgreSQL stops under a running web process and worker, then comes back: /healthz says
which part failed (503), API calls get a 503 that says the database is unavailable, and
everything recovers with no process restarted. A private cluster is stopped, never the shared
one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.procs import ROOT, celery_worker, clean_env, gunicorn, private_postgres

pytestmark = pytest.mark.integration


def get(url: str, timeout: float = 15) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def signup(url: str, name: str) -> tuple[int, dict]:
    body = json.dumps(
        {"username": name, "email": f"{name}@example.com", "password": "A-long-pass-phrase-9"}
    ).encode()
    request = urllib.request.Request(
        f"{url}/api/v1/auth/signup/",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_postgres_down_then_back_without_restarting_anything(tmp_path):
    with private_postgres() as pg:
        env = {"DATABASE_URL": pg.url}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=clean_env(tmp_path, **env),
            check=True,
            timeout=300,
        )
        with (
            gunicorn(tmp_path, EMS_WEB_THREADS="4", **env) as (url, _, web),
            celery_worker(tmp_path, **env) as worker,
        ):
            wait_for(lambda: get(f"{url}/healthz")[0] == 200, 90, "a healthy portal")
            assert signup(url, "before")[0] == 201

            pg.stop()
            stopped = time.monotonic()
            status, body = get(f"{url}/healthz")
            assert status == 503, body
            assert body["status"] == "fail"
            assert body["checks"]["database"]["ok"] is False
            assert body["checks"]["database"]["detail"]
            # Only the database failed: the broker and the worker still answer.
            assert body["checks"]["broker"]["ok"] is True
            assert body["checks"]["worker"]["ok"] is True
            status, body = signup(url, "during")
            assert status == 503, body
            assert "database is unavailable" in body["detail"]
            assert time.monotonic() - stopped < 30

            pg.start()
            started = time.monotonic()
            wait_for(lambda: get(f"{url}/healthz")[0] == 200, 60, "recovery")
            recovered = time.monotonic() - started
            assert signup(url, "after")[0] == 201
            assert recovered < 30, recovered
            # Nothing was restarted: the same processes, and gunicorn booted one worker only.
            assert web.poll() is None and worker.poll() is None
            log = (tmp_path / "gunicorn.log").read_text()
            assert log.count("Booting worker") == 1, log
            print(f"postgres outage: recovered {recovered:.2f}s after the database restarted")
