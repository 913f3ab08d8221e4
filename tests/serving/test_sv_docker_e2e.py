"""End to end on a real Docker engine: the flower classifier as a service, and the reconciler's
crash, fault and failure paths on real containers."""

from __future__ import annotations

import json

import pytest

from serving import reconciler, services
from serving.backends import for_node
from serving.backends.base import LABEL_SERVICE
from serving.models import Instance, Service
from serving.services import InstanceSize, Scaling
from tests.serving.conftest import (
    ANGEL_VERSION_DIR,
    converge,
    make_broken_version,
    make_version,
    status_is,
)
from tests.serving.helpers import angel_model, post_json

pytestmark = pytest.mark.e2e


def _containers(docker_client, service) -> set[str]:
    found = docker_client.containers.list(
        all=True, filters={"label": f"{LABEL_SERVICE}={service.service_id}"}
    )
    return {c.name for c in found}


def _running(service):
    return list(service.instances.filter(state=Instance.RUNNING).select_related("revision"))


def _predict(instance, body) -> str:
    answer = post_json(f"{instance.address}/v1/models/m:predict", body, timeout=60)
    return answer["predictions"][0]["classes"]


def test_flower_classifier_lifecycle_on_docker(owner, docker_group, docker_client, examples):
    flower = json.loads((examples / "flower" / "flower.json").read_text())
    v1 = make_version(owner, examples / "flower" / "1", name="flower", runtime="tfserving")
    service = services.service_deploy(
        actor=owner.membership,
        version=v1,
        group=docker_group,
        name="flower",
        size=InstanceSize(cpu_millicores=1000, memory_mib=2048),
    )
    converge(service, status_is(Service.NORMAL), timeout=240, what="Normal")
    first = _running(service)[0]
    assert _predict(first, flower) == "roses"
    assert _containers(docker_client, service) == {first.instance_id}

    # kill the container: replaced, Normal again
    docker_client.containers.get(first.instance_id).kill()
    converge(service, lambda s: s.instances.filter(state=Instance.FAILED).exists(), timeout=30)
    converge(service, status_is(Service.NORMAL), timeout=240, what="Normal after the kill")
    first.refresh_from_db()
    assert first.state == Instance.FAILED and first.stopped_at > first.started_at
    second = _running(service)[0]
    assert second.instance_id != first.instance_id and _predict(second, flower) == "roses"

    # stop: no container; resume: the same replica count
    services.service_scale(actor=owner.membership, service=service, replicas=2)
    converge(service, lambda s: s.status == Service.NORMAL and len(_running(s)) == 2, timeout=240)
    services.service_stop(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), timeout=60)
    assert _containers(docker_client, service) == set()
    services.service_resume(actor=owner.membership, service=service)
    converge(service, status_is(Service.NORMAL), timeout=240, what="Normal after resume")
    assert len(_running(service)) == 2 and service.replicas == 2
    services.service_scale(actor=owner.membership, service=service, replicas=1)
    converge(service, lambda s: s.status == Service.NORMAL and len(_running(s)) == 1)

    # update to 2.0: the new version answers, the old containers are gone
    old = {i.instance_id for i in _running(service)}
    v2 = make_version(owner, examples / "flower" / "1", config=v1.config, runtime="tfserving")
    assert v2.label == "2.0"
    services.service_update(actor=owner.membership, service=service, version=v2)
    converge(service, status_is(Service.NORMAL), timeout=240, what="rolled out")
    current = _running(service)
    assert [i.revision.version_id for i in current] == [v2.pk]
    assert _predict(current[0], flower) == "roses"
    assert _containers(docker_client, service) == {current[0].instance_id}
    assert not old & _containers(docker_client, service)

    # rollback: back on 1.0
    services.service_rollback(actor=owner.membership, service=service)
    converge(service, status_is(Service.NORMAL), timeout=240, what="rolled back")
    current = _running(service)
    assert [i.revision.version_id for i in current] == [v1.pk]
    assert _containers(docker_client, service) == {current[0].instance_id}

    services.service_delete(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), timeout=60)
    assert _containers(docker_client, service) == set()
    node = docker_group.nodes.get()
    node.refresh_from_db()
    assert node.claimed_cpu_millicores == 0 and node.claimed_memory_mib == 0


def test_a_stray_labelled_container_is_swept(owner, docker_group, docker_client, serving_env):
    """A container labelled for this node that no service knows (e.g. from a deleted database
    row) is removed by the node sweep. (A worker killed mid-launch on Docker, by a real
    SIGKILL of a real Celery worker: tests/serving/test_sv_worker_kill.py.)"""
    version = make_version(owner, angel_model() / ANGEL_VERSION_DIR)
    service = services.service_deploy(
        actor=owner.membership,
        version=version,
        group=docker_group,
        name="swept",
        size=InstanceSize(cpu_millicores=500, memory_mib=512),
        scaling=Scaling(replicas=2),
    )
    node = docker_group.nodes.get()
    stray = docker_client.containers.create(
        "busybox:latest"
        if docker_client.images.list(name="busybox")
        else docker_client.images.list(name="ems-runtime-angel")[0].id,
        labels={
            LABEL_SERVICE: "ems-gone0000",
            "ems.instance": "ems-gone0000-aaaaaa",
            "ems.node": node.name,
            "ems.tenant": "1",
        },
        name=f"ems-gone0000-{node.name}",
    )
    converge(service, status_is(Service.NORMAL), timeout=120)
    running = _running(service)
    assert len(running) == 2
    assert _containers(docker_client, service) == {i.instance_id for i in running}
    assert reconciler.sweep_node(node) == ["ems-gone0000-aaaaaa"]
    with pytest.raises(Exception, match=r"No such container|404"):
        docker_client.containers.get(stray.id)
    listed = {s.instance_id for s in for_node(node).list()}
    assert listed == {i.instance_id for i in running}


def test_a_model_that_fails_to_load_is_failed_with_its_log_lines(
    owner, docker_group, docker_client, serving_env, settings
):
    settings.EMS_SERVING_MAX_FAILURES = 2
    good = make_version(owner, angel_model() / ANGEL_VERSION_DIR)
    broken = make_broken_version(owner, good.config, serving_env)
    service = services.service_deploy(
        actor=owner.membership,
        version=broken,
        group=docker_group,
        name="broken",
        size=InstanceSize(cpu_millicores=500, memory_mib=512),
    )
    converge(service, status_is(Service.FAILED), timeout=120, what="Failed")
    assert "failed 2 times" in service.message and len(service.message.splitlines()) > 1
    assert _containers(docker_client, service) == set()
    failed = list(service.instances.filter(state=Instance.FAILED))
    assert len(failed) == 2 and all(i.stopped_at and i.started_at for i in failed)
