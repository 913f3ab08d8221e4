"""Reconciler plumbing: the lease, the route hook, the Celery task, the bootstrap step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection

from serving import publish, reconciler, services
from serving.backends import for_node
from serving.backends.base import LABEL_SERVICE
from serving.models import Instance, Node, ResourceGroup, Service
from serving.reconciler import support
from tests.conftest import service_missing
from tests.serving.conftest import converge, status_is

SIZE = services.InstanceSize(cpu_millicores=500, memory_mib=512)


def test_a_held_lease_makes_a_second_pass_step_aside(owner, angel_version, dedicated):
    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="lease", size=SIZE
    )
    owner_token = support.take_lease(service.pk)
    assert owner_token and support.take_lease(service.pk) is None
    assert reconciler.reconcile(service.pk) == reconciler.BUSY
    assert service.instances.get().state == Instance.PENDING  # nothing touched
    support.drop_lease(service.pk, owner_token)
    assert reconciler.reconcile(service.pk) == reconciler.PROGRESSING
    assert service.instances.get().state == Instance.STARTING


def test_reconciler_publishes_routes_directly(owner, angel_version, dedicated, monkeypatch):
    heard = []
    original = publish.after_pass

    def recording(service, *, changed):
        heard.append((service.pk, changed))
        original(service, changed=changed)

    monkeypatch.setattr(publish, "after_pass", recording)
    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="hook",
        size=SIZE,
    )
    converge(service, status_is(Service.NORMAL))
    assert any(changed for _, changed in heard) and all(pk == service.pk for pk, _ in heard)
    generation = publish.store().get(service.service_id)["generation"]
    reconciler.reconcile(service.pk)  # nothing changed: a quiet pass, the route is not rewritten
    assert heard[-1] == (service.pk, False)
    assert publish.store().get(service.service_id)["generation"] == generation


def test_process_instances_outlive_the_worker_session(owner, angel_version, dedicated):
    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="detached",
        size=SIZE,
    )
    converge(service, status_is(Service.NORMAL))
    pid = int(service.instances.get(state=Instance.RUNNING).backend_id.split("-")[1])
    assert os.getsid(pid) == pid != os.getsid(0)  # its own session: a worker restart spares it


def test_the_task_runs_a_pass(owner, angel_version, dedicated):
    from serving.tasks import reconcile_all, reconcile_service

    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="task", size=SIZE
    )
    # the task body as a worker runs it (its follow-up goes to the broker, unconsumed here)
    assert reconcile_service.run(service.pk) == reconciler.PROGRESSING
    assert service.instances.get().state in (Instance.STARTING, Instance.RUNNING)
    result = reconcile_all.run()
    assert str(service.pk) in result


def test_bootstrap_is_idempotent(serving_env, settings):
    from django_celery_beat.models import PeriodicTask

    from serving import bootstrap

    lines = []
    bootstrap.run(demo=False, log=lines.append)
    groups = ResourceGroup.objects.filter(kind=ResourceGroup.PUBLIC)
    assert groups.count() >= 1 and all(g.nodes.count() == 1 for g in groups)
    node = Node.objects.get(group__region__name="ap-beijing", group__kind="public")
    assert node.backend == settings.EMS_RUNTIME_BACKEND and node.capacity_cpu_millicores >= 1000
    bootstrap.run(demo=False, log=lines.append)
    assert ResourceGroup.objects.filter(kind=ResourceGroup.PUBLIC).count() == groups.count()
    assert PeriodicTask.objects.get(task="serving.reconcile_all").interval.every == 15


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_at_the_fault_point_leaves_no_orphans(
    owner, angel_version, dedicated, settings, serving_env
):
    """A real worker process dies (os._exit) right after creating an instance; the next pass
    leaves exactly the desired instances. Needs a database a second process can open."""
    if connection.vendor != "postgresql":
        service_missing("the worker subprocess needs the test database on PostgreSQL")
    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="killed",
        size=SIZE,
        scaling=services.Scaling(replicas=2),
    )
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = dict(
        os.environ,
        DATABASE_URL=url,
        DEBUG="1",
        EMS_FAULT="after_container_create",
        EMS_DATA_DIR=str(settings.DATA_DIR),
        EMS_STORAGE_ROOT=str(settings.EMS_STORAGE_ROOT),
        EMS_MODEL_CACHE_DIR=str(settings.EMS_MODEL_CACHE_DIR),
        DJANGO_SETTINGS_MODULE="portal.settings",
    )
    env.pop("EMS_FAULT_MODE", None)
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from serving import reconciler; "
            f"reconciler.reconcile({service.pk})",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 137, worker.stderr[-2000:]
    node = dedicated.nodes.get()
    assert len(for_node(node).list({LABEL_SERVICE: service.service_id})) == 1
    Service.objects.filter(pk=service.pk).update(lease_until=None)  # its lease ran out
    converge(service, status_is(Service.NORMAL))
    running = set(
        service.instances.filter(state=Instance.RUNNING).values_list("instance_id", flat=True)
    )
    assert len(running) == 2
    assert {s.instance_id for s in for_node(node).list()} == running
