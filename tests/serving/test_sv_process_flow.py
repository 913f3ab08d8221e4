"""Deploy / stop / resume / scale / update / rollback on the process backend (default run)."""

from __future__ import annotations

import os
import signal

import pytest
from django.core.exceptions import ValidationError

from serving import reconciler, services
from serving.backends import for_node
from serving.backends.base import LABEL_SERVICE
from serving.models import Instance, Node, Service
from serving.services import InstanceSize, Scaling
from tests.serving.conftest import (
    ANGEL_VERSION_DIR,
    converge,
    make_broken_version,
    make_version,
    status_is,
)
from tests.serving.helpers import (
    LR_INDICES,
    angel_lr_variant,
    angel_model,
    get_json,
    lr_pred,
    lr_reference,
)

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)


def _available(instance) -> bool:
    body = get_json(f"{instance.address}/v1/models/m")
    return body["model_version_status"][0]["state"] == "AVAILABLE"


def _backend_ids(service) -> set[str]:
    ids = set()
    for node in Node.objects.filter(group=service.group):
        ids |= {s.instance_id for s in for_node(node).list({LABEL_SERVICE: service.service_id})}
    return ids


def _running(service):
    return list(service.instances.filter(state=Instance.RUNNING))


def test_deploy_stop_resume_on_processes(owner, angel_version, dedicated):
    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="lr",
        size=SIZE,
        scaling=Scaling(replicas=2),
    )
    assert service.service_id.startswith("ems-") and len(service.service_id) == 12
    assert service.status == Service.WAITING
    node = dedicated.nodes.get()
    assert (node.claimed_cpu_millicores, node.claimed_memory_mib) == (1000, 1024)
    converge(service, status_is(Service.NORMAL), what="Normal")
    running = _running(service)
    assert len(running) == 2 and all(_available(i) for i in running)
    assert all(i.started_at and i.ready_at and i.backend_id for i in running)
    assert _backend_ids(service) == {i.instance_id for i in running}
    kinds = set(service.events.values_list("kind", flat=True))
    assert {"scheduled", "model-fetched", "started", "healthy"} <= kinds

    services.service_stop(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), what="Stopped")
    assert _backend_ids(service) == set()
    assert all(i.stopped_at >= i.started_at for i in service.instances.all())
    node.refresh_from_db()
    assert (node.claimed_cpu_millicores, node.claimed_memory_mib) == (0, 0)
    assert service.saved_replicas == 2

    services.service_resume(actor=owner.membership, service=service)
    service.refresh_from_db()
    assert service.status == Service.RESUMING and service.replicas == 2
    converge(service, status_is(Service.NORMAL), what="Normal after resume")
    assert len(_running(service)) == 2

    services.service_scale(actor=owner.membership, service=service, replicas=1)
    converge(service, lambda s: len(_running(s)) == 1 and s.status == Service.NORMAL)
    assert len(_backend_ids(service)) == 1

    services.service_delete(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), what="deleted")
    assert _backend_ids(service) == set()
    assert not Service.objects.for_actor(owner.membership, "ems:DescribeServices").exists()


def test_crashed_instance_is_replaced(owner, angel_version, dedicated):
    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="crashy", size=SIZE
    )
    converge(service, status_is(Service.NORMAL))
    victim = _running(service)[0]
    os.kill(int(victim.backend_id.split("-")[1]), signal.SIGKILL)
    converge(service, lambda s: s.failures == 1 or s.status == Service.ABNORMAL, timeout=20)
    victim.refresh_from_db()
    assert victim.state == Instance.FAILED and victim.stopped_at is not None
    converge(service, status_is(Service.NORMAL), what="Normal after the crash")
    replacement = _running(service)[0]
    assert replacement.instance_id != victim.instance_id and replacement.restarts == 1
    assert service.events.filter(kind="replaced").exists()


def test_update_rolls_over_and_rollback_returns(owner, angel_version, dedicated, serving_env):
    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="roll", size=SIZE
    )
    converge(service, status_is(Service.NORMAL))
    first = _running(service)[0]
    v1_answer = lr_reference(angel_model(), LR_INDICES)
    assert lr_pred(first.address) == pytest.approx(v1_answer, rel=1e-5)
    # 2.0: different weights, so a wrong model served after the update cannot pass
    v2_dir = angel_lr_variant(serving_env / "lr-v2", bias=4.0)
    v2_answer = lr_reference(v2_dir, LR_INDICES)
    assert abs(v2_answer - v1_answer) > 1.0
    v2 = make_version(owner, v2_dir / ANGEL_VERSION_DIR, config=angel_version.config)
    assert v2.manifest_digest != angel_version.manifest_digest
    services.service_update(actor=owner.membership, service=service, version=v2)
    service.refresh_from_db()
    assert service.status == Service.UPDATING

    converge(service, status_is(Service.NORMAL), what="rolled out")
    current = _running(service)
    assert [i.revision.version_id for i in current] == [v2.pk]
    assert lr_pred(current[0].address) == pytest.approx(v2_answer, rel=1e-5)
    first.refresh_from_db()
    # the old instance was kept until the new one was healthy
    assert first.state == Instance.STOPPED
    assert first.stopped_at >= current[0].ready_at
    assert _backend_ids(service) == {current[0].instance_id}

    services.service_rollback(actor=owner.membership, service=service)
    converge(service, status_is(Service.NORMAL), what="rolled back")
    back = _running(service)
    assert [i.revision.version_id for i in back] == [angel_version.pk]
    assert lr_pred(back[0].address) == pytest.approx(v1_answer, rel=1e-5)
    current[0].refresh_from_db()
    assert current[0].stopped_at >= back[0].ready_at  # the same rule on the way back
    assert service.revisions.count() == 3


def test_update_without_spare_capacity_replaces_one_at_a_time(owner, angel_version, serving_env):
    from tests.serving.conftest import cleanup_group, make_group

    group = make_group(tenant=owner.tenant, cpu=500, memory=512)
    try:
        service = services.service_deploy(
            actor=owner.membership, version=angel_version, group=group, name="tight", size=SIZE
        )
        converge(service, status_is(Service.NORMAL))
        v2_dir = angel_lr_variant(serving_env / "lr-v2", bias=-4.0)
        v2 = make_version(owner, v2_dir / ANGEL_VERSION_DIR, config=angel_version.config)
        services.service_update(actor=owner.membership, service=service, version=v2)
        converge(service, lambda s: "one at a time" in s.message or s.status == Service.NORMAL)
        assert service.events.filter(message__contains="one at a time").exists()
        converge(service, status_is(Service.NORMAL))
        current = _running(service)
        assert [i.revision.version_id for i in current] == [v2.pk]
        assert lr_pred(current[0].address) == pytest.approx(
            lr_reference(v2_dir, LR_INDICES), rel=1e-5
        )
    finally:
        cleanup_group(group)


def test_a_model_that_fails_to_load_ends_failed_with_its_log(
    owner, angel_version, dedicated, serving_env, settings
):
    settings.EMS_SERVING_MAX_FAILURES = 2
    broken = make_broken_version(owner, angel_version.config, serving_env)
    service = services.service_deploy(
        actor=owner.membership, version=broken, group=dedicated, name="broken", size=SIZE
    )
    converge(service, status_is(Service.FAILED), timeout=120, what="Failed")
    assert "failed 2 times" in service.message
    assert len(service.message.splitlines()) > 1  # the runtime's own last lines
    assert _backend_ids(service) == set()
    node = dedicated.nodes.get()
    assert node.claimed_cpu_millicores == 0
    failed = service.instances.filter(state=Instance.FAILED)
    assert failed.count() == 2 and all(i.stopped_at for i in failed)


def test_fault_after_create_leaves_exactly_the_desired_instances(
    owner, angel_version, dedicated, monkeypatch
):
    from serving.faults import SimulatedCrash

    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="faulty",
        size=SIZE,
        scaling=Scaling(replicas=2),
    )
    monkeypatch.setenv("EMS_FAULT", "after_container_create")
    monkeypatch.setenv("EMS_FAULT_MODE", "raise")
    with pytest.raises(SimulatedCrash):
        reconciler.reconcile(service.pk)
    monkeypatch.delenv("EMS_FAULT")
    assert len(_backend_ids(service)) == 1  # created, never recorded
    service.refresh_from_db()
    service.lease_until = None  # the dead worker's lease would expire; don't wait for it
    Service.objects.filter(pk=service.pk).update(lease_until=None)
    converge(service, status_is(Service.NORMAL))
    running = _running(service)
    assert len(running) == 2
    assert _backend_ids(service) == {i.instance_id for i in running}


def test_deploy_refusals_are_clear(owner, angel_version, dedicated, serving_env):
    from tests.serving.conftest import make_group

    with pytest.raises(services.InsufficientResources, match="insufficient resources: needs"):
        services.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=dedicated,
            name="big",
            size=InstanceSize(cpu_millicores=3000, memory_mib=512),
            scaling=Scaling(replicas=2),
        )
    with pytest.raises(services.InsufficientResources, match=r"needs 1 GPU, the group .* has 0"):
        services.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=dedicated,
            name="gpu",
            size=InstanceSize(cpu_millicores=500, memory_mib=512, gpus=1),
        )
    public = make_group()
    with pytest.raises(ValidationError) as info:
        services.service_deploy(
            actor=owner.membership, version=angel_version, group=public, name="pub", size=SIZE
        )
    assert "quota_type" in info.value.message_dict
    with pytest.raises(ValidationError):
        services.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=dedicated,
            name="x",
            size=InstanceSize(cpu_millicores=50, memory_mib=512),
        )
    node = dedicated.nodes.get()
    assert node.claimed_cpu_millicores == 0  # nothing half-claimed
    assert not Service.objects.exists()
