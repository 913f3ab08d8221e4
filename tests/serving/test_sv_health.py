"""Health of running instances (serving.health) and the reconcile lease's heartbeat, on real
runtime processes: a killed runtime leaves the routes at the first probe, a frozen one (SIGSTOP)
after the threshold; both are replaced, with an event that says why."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import pytest
from django.utils.timezone import now

from serving import health, publish, services
from serving.models import Instance, Service
from serving.reconciler import support
from serving.services import InstanceSize
from tests.serving.conftest import converge, status_is

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)


def _pid(instance) -> int:
    return int(instance.backend_id.split("-")[1])


def _routed(service) -> list[str]:
    route = publish.store().get(service.service_id) or {}
    return [item["id"] for item in route.get("instances", [])]


@pytest.fixture
def queued(monkeypatch):
    """The reconciles the health round asks for (the test runs the passes itself)."""
    from serving import tasks

    calls = []
    monkeypatch.setattr(tasks.reconcile_service, "delay", lambda pk: calls.append(pk))
    return calls


@pytest.fixture
def two_replicas(owner, angel_version, dedicated):
    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="health",
        size=SIZE,
        scaling=services.Scaling(replicas=2),
    )
    converge(service, status_is(Service.NORMAL), what="Normal")
    return service


def test_probe_says_what_failed():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = health.probe(f"http://127.0.0.1:{port}", timeout=1)
    assert not refused.ok and "refused" in refused.detail.lower()

    silent = socket.socket()  # accepts connections, never answers: a frozen runtime
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        answers = health.probe_many([address, address], timeout=0.3)
        assert list(answers) == [address]
        assert not answers[address].ok and answers[address].detail == "no answer within 0.3 s"
    finally:
        silent.close()
    assert health.probe("", timeout=1).detail == "no address"


def test_killed_instance_leaves_the_routes_at_once_and_is_replaced(two_replicas, queued):
    service = two_replicas
    victim, survivor = list(service.instances.filter(state=Instance.RUNNING))
    assert sorted(_routed(service)) == sorted([victim.instance_id, survivor.instance_id])
    assert health.check_running() == {}  # all answer: nothing written
    os.kill(_pid(victim), signal.SIGKILL)
    time.sleep(0.2)

    report = health.check_running()
    assert list(report) == [victim.instance_id]
    assert "exited" in report[victim.instance_id]
    assert _routed(service) == [survivor.instance_id]  # out of the routes first
    assert queued == [service.pk]
    event = service.events.get(kind=health.UNHEALTHY)
    assert victim.instance_id in event.message and "taken out of the routes" in event.message

    converge(service, lambda s: s.failures == 1, timeout=20, what="crash recorded")
    converge(service, status_is(Service.NORMAL), what="Normal after the crash")
    victim.refresh_from_db()
    assert victim.state == Instance.FAILED
    running = list(service.instances.filter(state=Instance.RUNNING))
    assert len(running) == 2 and victim.instance_id not in {i.instance_id for i in running}
    assert sorted(_routed(service)) == sorted(i.instance_id for i in running)


def test_frozen_instance_is_taken_out_after_the_threshold_and_replaced(
    two_replicas, queued, settings
):
    settings.EMS_HEALTH_PROBE_TIMEOUT_MS = 300
    settings.EMS_HEALTH_FAILURE_THRESHOLD = 3
    service = two_replicas
    victim, survivor = list(service.instances.filter(state=Instance.RUNNING))
    os.kill(_pid(victim), signal.SIGSTOP)
    try:
        started = time.monotonic()
        report = health.check_running()  # the engine says running: probed again, 1 s apart
        assert time.monotonic() - started >= 2.0
        reason = report[victim.instance_id]
        assert "did not answer its health probe for" in reason and "(3 probes" in reason
        assert _routed(service) == [survivor.instance_id]
        victim.refresh_from_db()
        assert victim.unhealthy_reason == reason and victim.probe_failures == 3

        converge(service, status_is(Service.NORMAL), what="Normal after the freeze")
        victim.refresh_from_db()
        assert victim.state == Instance.FAILED
        crashed = service.events.get(kind="crashed", instance_id=victim.instance_id)
        assert crashed.message.startswith(f"instance {victim.instance_id} did not answer")
        assert "; replaced" in crashed.message
        assert service.events.filter(kind="replaced").exists()
        with pytest.raises(ProcessLookupError):  # the frozen process was killed, not left
            for _ in range(50):
                os.kill(_pid(victim), 0)
                time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_pid(victim), signal.SIGKILL)


def test_a_probe_that_answers_again_resets_the_count(two_replicas, queued, settings):
    settings.EMS_HEALTH_PROBE_TIMEOUT_MS = 300
    service = two_replicas
    victim = service.instances.filter(state=Instance.RUNNING).first()
    os.kill(_pid(victim), signal.SIGSTOP)
    thaw = threading.Timer(0.5, os.kill, args=(_pid(victim), signal.SIGCONT))
    thaw.start()
    try:
        assert health.check_running() == {}  # a blip: the second probe answers
    finally:
        thaw.join()
    victim.refresh_from_db()
    assert (victim.probe_failures, victim.unhealthy_reason) == (0, "")

    # failures left by an earlier round are forgotten at the next answer
    Instance.objects.filter(pk=victim.pk).update(probe_failures=2, probe_failing_since=now())
    assert health.check_running() == {}
    victim.refresh_from_db()
    assert (victim.probe_failures, victim.probe_failing_since, victim.unhealthy_reason) == (
        0,
        None,
        "",
    )
    assert queued == []
    assert victim.instance_id in _routed(service)


def test_the_heartbeat_keeps_a_lease_and_a_dead_holders_lease_runs_out(
    transactional_db, owner, angel_version, dedicated, queued, settings
):
    """Committed rows (as between worker processes): a live pass's lease outlives its length;
    one whose holder died (no heartbeat, never dropped) is free again after it."""
    settings.EMS_SERVING_LEASE_SECONDS = 3
    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="lease", size=SIZE
    )
    done = threading.Event()
    holder = threading.Thread(target=_lease_holder, args=(service.pk, 30, done))
    holder.start()
    try:
        time.sleep(5)  # longer than the lease: only the heartbeat keeps it
        assert support.take_lease(service.pk) is None
    finally:
        done.set()
        holder.join(30)
    assert not holder.is_alive()
    assert support.take_lease(service.pk) is None  # the holder ended without dropping it...
    start = time.monotonic()
    while support.take_lease(service.pk) is None:  # ...as a killed worker would
        assert time.monotonic() - start < 10, "a dead holder's lease never ran out"
        time.sleep(0.2)
    assert time.monotonic() - start <= 3.5


def _lease_holder(service_pk: int, hold: float, done: threading.Event) -> None:
    from django.db import connections

    owner = support.take_lease(service_pk)
    assert owner
    heartbeat = support.Heartbeat(service_pk, owner)
    heartbeat.__enter__()
    done.wait(hold)
    heartbeat._stop.set()  # stops renewing, never drops: the lease must run out by itself
    heartbeat._thread.join(10)
    connections.close_all()


def test_a_pass_that_lost_its_lease_stops(owner, angel_version, dedicated, queued):
    from serving.reconciler.core import LeaseLost, Pass

    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="lost", size=SIZE
    )
    owner_token = support.take_lease(service.pk)
    run = Pass(Service.objects.get(pk=service.pk), owner_token)
    run.keep_lease()  # still ours
    Service.objects.filter(pk=service.pk).update(lease_owner="another-pass")
    with pytest.raises(LeaseLost):
        run.keep_lease()
    with pytest.raises(LeaseLost):
        run.execute()  # stops before launching anything
    assert not service.instances.exclude(state=Instance.PENDING).exists()
