"""The reconciler inside real Celery worker processes on PostgreSQL: a worker killed with
SIGKILL in the middle of launching an instance (the process exists, the database does not know
it yet), then a new worker converges to exactly the desired instances, no orphan left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

from serving import services
from serving.backends import for_node
from serving.backends.base import LABEL_SERVICE
from serving.models import Instance, Service
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]
SIZE = services.InstanceSize(cpu_millicores=500, memory_mib=512)
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def _broker(settings) -> tuple[str, dict]:
    """A filesystem broker of this test's own (nothing else sends to it or consumes it)."""
    folder = Path(settings.DATA_DIR) / "broker"
    options = {  # the portal's own embedded transport and layout (portal/settings.py)
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "claimed_folder": str(folder / "claimed"),
        "dead_letter_folder": str(folder / "dead-letter"),
        "store_processed": False,
    }
    for path in (v for v in options.values() if isinstance(v, str)):
        os.makedirs(path, exist_ok=True)
    return "filesystem://", options


def _enqueue(settings, service_pk: int) -> None:
    """What the portal does after a change (and the periodic pass does every 15 s)."""
    broker, options = _broker(settings)
    app = Celery("probe", broker=broker)
    app.conf.broker_transport = "portal.filebroker:Transport"  # atomic, as the worker reads it
    app.conf.broker_transport_options = options
    app.conf.task_serializer = "json"
    app.send_task("serving.reconcile_service", args=[service_pk])


@contextmanager
def worker(settings, log: Path, **extra: str):
    """``celery -A portal worker`` on the test database, the test's storage, cache, routes."""
    # without REDIS_URL and CELERY_BROKER_URL the portal uses its embedded filesystem broker
    # under EMS_DATA_DIR: a queue of this test's own
    dropped = ("EMS_FAULT", "CELERY_BROKER", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=_database_url(),
        EMS_DATA_DIR=str(settings.DATA_DIR),
        EMS_STORAGE_BACKEND="local",
        EMS_STORAGE_ROOT=str(settings.EMS_STORAGE_ROOT),
        EMS_MODEL_CACHE_DIR=str(settings.EMS_MODEL_CACHE_DIR),
        EMS_GATEWAY_ROUTES=settings.EMS_GATEWAY_ROUTES,
        EMS_SERVING_STOP_GRACE=str(settings.EMS_SERVING_STOP_GRACE),
        **extra,
    )
    argv = [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo"]
    argv += ["--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "INFO"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(predicate, what: str, proc, log: Path, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        assert proc.poll() is None or what == "the worker to die", f"worker exited:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{tail}"
        time.sleep(0.2)


def _marker(path: Path):
    text = path.read_text() if path.exists() else ""
    return text.split() if text.endswith("\n") else None


def test_a_worker_killed_mid_launch_then_a_new_worker_converges(
    owner, angel_version, dedicated, settings, serving_env
):
    kill_mid_launch_then_converge(owner, angel_version, dedicated, settings, serving_env)


@pytest.mark.e2e
def test_the_same_on_docker(owner, docker_group, settings, serving_env):
    from tests.serving.conftest import ANGEL_VERSION_DIR, make_version
    from tests.serving.helpers import angel_model

    version = make_version(owner, angel_model() / ANGEL_VERSION_DIR)
    kill_mid_launch_then_converge(owner, version, docker_group, settings, serving_env)


def kill_mid_launch_then_converge(owner, version, group, settings, serving_env):
    if connection.vendor != "postgresql":
        service_missing("worker processes need the test database on PostgreSQL")
    service = services.service_deploy(
        actor=owner.membership,
        version=version,
        group=group,
        name="killed",
        size=SIZE,
        scaling=services.Scaling(replicas=2),
    )
    backend = for_node(group.nodes.get())
    marker = serving_env / "paused-at"

    def backend_ids() -> set[str]:
        return {s.instance_id for s in backend.list({LABEL_SERVICE: service.service_id})}

    # 1. the first worker pauses right after creating an instance's process, before recording
    #    it; there we kill it with SIGKILL, as the OOM killer or a node failure would
    first_log = serving_env / "worker-1.log"
    fault = {"EMS_FAULT": "after_container_create", "EMS_FAULT_MODE": "pause"}
    with worker(settings, first_log, EMS_FAULT_MARKER=str(marker), **fault) as first:
        _enqueue(settings, service.pk)
        pid, point = _wait(lambda: _marker(marker), "the launch to pause", first, first_log)
        assert point == "after_container_create"
        os.kill(int(pid), signal.SIGKILL)
        _wait(lambda: first.poll() is not None, "the worker to die", first, first_log, 30)
        assert first.returncode == -signal.SIGKILL
    created = backend_ids()
    assert len(created) == 1  # an instance process runs that the database knows nothing of
    recorded = set(service.instances.exclude(backend_id="").values_list("instance_id", flat=True))
    assert not created & recorded
    service.refresh_from_db()
    assert service.lease_until is not None  # the dead worker still holds the lease ...
    Service.objects.filter(pk=service.pk).update(lease_until=None)  # ... until it runs out

    # 2. a new worker, from the broker alone, converges: exactly two instances, no orphan
    second_log = serving_env / "worker-2.log"
    with worker(settings, second_log) as second:
        _enqueue(settings, service.pk)

        def converged():
            service.refresh_from_db()
            running = set(
                service.instances.filter(state=Instance.RUNNING).values_list(
                    "instance_id", flat=True
                )
            )
            return (
                service.status == Service.NORMAL
                and len(running) == 2
                and backend_ids() == running
                and running
            )

        running = _wait(converged, "Normal with 2 instances", second, second_log, 240)
    assert len(running) == 2
    assert backend_ids() == running  # the orphan of the killed worker is gone
