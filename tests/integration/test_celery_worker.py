"""A real Celery worker consumes from the broker and runs a task end to end: on Redis and on
the embedded filesystem broker, and through the /healthz round trip."""

from __future__ import annotations

import base64
import json
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


def _client_app(broker: str, backend: str, options: dict, transport: str | None = None) -> Celery:
    app = Celery("probe", broker=broker, backend=backend)
    app.conf.broker_transport_options = options
    app.conf.task_serializer = "json"
    if transport:
        app.conf.broker_transport = transport
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


def _embedded(tmp_path) -> tuple[Celery, dict[str, str]]:
    """A client of the embedded broker in ``tmp_path`` and a worker environment using it."""
    folder = tmp_path / "broker"
    options = {
        name.replace("-", "_") + "_folder": str(folder / name)
        for name in ("processed", "control", "claimed", "dead-letter")
    }
    options.update(data_folder_in=str(folder / "queue"), data_folder_out=str(folder / "queue"))
    for path in options.values():
        os.makedirs(path, exist_ok=True)
    results = tmp_path / "celery-results"
    results.mkdir()
    env = {"DEBUG": "1", "EMS_DATA_DIR": str(tmp_path)}
    for key in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASE_URL"):
        env[key] = ""
    app = _client_app(
        "filesystem://",
        f"portal.filebroker:FileResultBackend+file://{results}",
        options,
        transport="portal.filebroker:Transport",
    )
    return app, env


def test_malformed_task_message_on_redis_is_set_aside(redis_url, tmp_path):
    """Any broker: a task message whose body has the wrong shape stopped the worker
    ("Unrecoverable error: ValueError"); now it is logged, rejected and set aside."""
    queue = f"ems-test-{secrets.token_hex(4)}"
    env = {
        "DEBUG": "1",
        "EMS_DATA_DIR": str(tmp_path),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
    }
    app = _client_app(redis_url, redis_url, {})
    with celery_worker(env, queue) as worker:
        _round_trip(app, queue)
        with app.connection_for_write() as conn:
            conn.Producer().publish(
                '"not a list"',
                routing_key=queue,
                headers={"task": "portal.ping", "id": secrets.token_hex(8), "lang": "py"},
                content_type="application/json",
                content_encoding="utf-8",
            )
        _round_trip(app, queue)
        assert worker.poll() is None, "the worker died"
    dead = list((tmp_path / "broker" / "dead-letter").glob("*.task.json"))
    assert len(dead) == 1
    assert json.loads(dead[0].read_text())["body"] == '"not a list"'


def test_worker_on_embedded_broker_runs_a_task(tmp_path):
    queue = f"ems-test-{secrets.token_hex(4)}"
    app, env = _embedded(tmp_path)
    with celery_worker(env, queue):
        _round_trip(app, queue)


def test_bad_messages_are_set_aside_and_the_worker_lives_on(tmp_path):
    """Corrupt files dropped into the real queue folder while a real worker consumes it: each
    unreadable one lands in dead-letter/ with a note, the rest are logged and dropped by Celery,
    and the worker keeps answering."""
    queue = f"ems-test-{secrets.token_hex(4)}"
    app, env = _embedded(tmp_path)
    folder = tmp_path / "broker" / "queue"
    dead = tmp_path / "broker" / "dead-letter"
    with celery_worker(env, queue) as worker:
        _round_trip(app, queue)
        envelope = {
            "body": "e30=",
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {
                "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": queue},
                "delivery_mode": 2,
                "delivery_tag": "x",
            },
        }
        unreadable = {
            "empty": b"",
            "truncated": b'{"body": "e30=", "content-enc',
            "not-json": b"\x00\xff garbage",
            "a-list": b"[1, 2, 3]",
            "no-properties": json.dumps({"body": "e30="}).encode(),
            "bad-base64": json.dumps({**envelope, "body": "e30"}).encode(),
            "list-tag": json.dumps(
                {**envelope, "properties": {**envelope["properties"], "delivery_tag": [1]}}
            ).encode(),
        }
        # Readable by the transport, wrong for Celery: its own error paths drop them.
        celery_bad = {
            "no-task-header": json.dumps(envelope).encode(),
            "unknown-task": json.dumps(
                {**envelope, "headers": {"task": "no.such.task", "id": "1"}}
            ).encode(),
            "ping-with-a-string-body": json.dumps(
                {
                    **envelope,
                    "headers": {"task": "portal.ping", "id": "2", "lang": "py"},
                    "body": base64.b64encode(b'"not a list"').decode(),
                }
            ).encode(),
            "ping-without-delivery-info": json.dumps(
                {
                    **envelope,
                    "headers": {"task": "portal.ping", "id": "3", "lang": "py"},
                    "body": base64.b64encode(b'[["x"], {}, {}]').decode(),
                    "properties": {
                        k: v for k, v in envelope["properties"].items() if k != "delivery_info"
                    },
                }
            ).encode(),
            "ping-with-bad-args": json.dumps(
                {
                    **envelope,
                    "headers": {"task": "portal.ping", "id": "4", "lang": "py"},
                    "body": base64.b64encode(b'[{"a": 1}, [], {}]').decode(),
                }
            ).encode(),
        }
        for index, (label, data) in enumerate({**unreadable, **celery_bad}.items()):
            (folder / f"{index:020d}_{label}.{queue}.msg").write_bytes(data)
        deadline = time.monotonic() + 60
        while len(list(dead.glob("*.msg"))) < len(unreadable) and time.monotonic() < deadline:
            time.sleep(0.2)
        _round_trip(app, queue)
        assert worker.poll() is None, "the worker died"
        # Every message the worker took was acknowledged: none is left claimed.
        deadline = time.monotonic() + 20
        while _claimed_files(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _claimed_files(tmp_path)
    names = sorted(p.name for p in dead.glob("*.msg"))
    assert {n.split("_", 1)[1].split(".")[0] for n in names} == set(unreadable)
    # Celery could not make a request of this one: set aside with the reason, worker alive.
    tasks = [json.loads(p.read_text()) for p in dead.glob("*.task.json")]
    assert [t["body"] for t in tasks] == ['"not a list"']
    assert "too many values to unpack" in tasks[0]["reason"]
    for name in names:
        assert (dead / f"{name}.why").read_text().strip()
    assert not [p for p in folder.iterdir() if p.name.endswith(f".{queue}.msg")]


@pytest.mark.django_db
def test_healthz_round_trip_through_a_real_worker(client, settings):
    """The web process's own broker settings, a worker started with the same environment.

    The default queue is emptied first: what earlier tests queued there (deploys' reconciles,
    a beat's rounds) is not this test's, and a solo worker works through it in order before it
    reaches the ping — which then expires (seen once in CI)."""
    from portal.celery import app

    settings.EMS_HEALTH_PING_TIMEOUT = 30
    app.control.purge()
    with celery_worker({}, "celery"):
        deadline = time.monotonic() + 90
        while True:
            response = client.get("/healthz")
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["worker"]["ok"] is True
    assert body["checks"]["worker"]["detail"] == "pong"


CONSUMER = """
import json, sys, time
from kombu import Connection
conn = Connection("filesystem://", transport="portal.filebroker:Transport",
                  transport_options=json.loads(sys.argv[1]))
queue = conn.SimpleQueue("jobs")
message = queue.get(timeout=60)
print(json.dumps(message.payload), flush=True)
if sys.argv[2] == "ack":
    message.ack()
    print("acked", flush=True)
time.sleep(600)
"""


def _consumer(options: dict, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CONSUMER, json.dumps(options), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _claimed_files(tmp_path) -> list:
    return [p for p in (tmp_path / "broker" / "claimed").glob("*/*") if p.is_file()]


def test_a_killed_consumers_unacknowledged_message_is_delivered_again(tmp_path):
    """kill -9 of a consumer holding an unacknowledged message: the message stays in its
    claimed folder, and the next consumer to open a channel puts it back and gets it; once
    acknowledged, nothing is left anywhere."""
    app, _ = _embedded(tmp_path)
    options = app.conf.broker_transport_options
    with app.connection_for_write() as conn:
        conn.SimpleQueue("jobs").put({"n": 1})
    first = _consumer(options, "hold")
    try:
        assert json.loads(first.stdout.readline()) == {"n": 1}
        assert len(_claimed_files(tmp_path)) == 1
    finally:
        first.kill()
        first.wait()
    queue = tmp_path / "broker" / "queue"
    assert not list(queue.glob("*.msg"))
    second = _consumer(options, "ack")
    try:
        assert json.loads(second.stdout.readline()) == {"n": 1}
        assert second.stdout.readline().strip() == "acked"
        assert not _claimed_files(tmp_path)
        assert not list(queue.glob("*.msg"))
    finally:
        second.kill()
        second.wait()
