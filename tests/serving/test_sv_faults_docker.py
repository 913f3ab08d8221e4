"""The fault suite's Docker half: ``docker pause`` freezes a runtime container under traffic.
The engine reports it ``paused`` (not running), so the first failed probe takes it out of the
routes; the reconciler stops the paused container and replaces it. Real processes (worker, beat,
gateway), PostgreSQL, Redis and containers of the angel runtime image."""

from __future__ import annotations

import time

import pytest

from serving import publish
from serving.backends import for_node
from serving.backends.base import PAUSED
from serving.models import Instance
from tests.gateway.conftest import PREDICT_BODY, GatewayProcess
from tests.serving.conftest import cleanup_group, make_group
from tests.serving.faults_cluster import Traffic, wait_for
from tests.serving.helpers import build_image
from tests.serving.test_sv_faults import SLACK, _converged, _deploy, _routed, cluster, report

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
__all__ = ["cluster"]  # the fixture, shared with the process half


@pytest.fixture
def angel_docker_group(owner, serving_env, docker_client):
    build_image("angel")
    group = make_group(tenant=owner.tenant, backend="docker", cpu=2000, memory=8192)
    yield group
    cleanup_group(group)
    node = group.nodes.get()
    for network in docker_client.networks.list(names=[f"ems-runtime-{node.name}"]):
        network.remove()


def test_paused_container_leaves_the_routes_and_is_replaced(
    owner, angel_version, angel_docker_group, docker_client, settings, cluster
):
    cluster.beat()
    cluster.worker()
    gateway = GatewayProcess(settings.EMS_GATEWAY_ROUTES, EMS_GATEWAY_UPSTREAM_TIMEOUT="15")
    try:
        service = _deploy(owner, angel_version, angel_docker_group, "paused", 2)
        wait_for(lambda: _converged(service, 2), timeout=180, every=0.2, what="Normal")
        wait_for(lambda: len(_routed(service)) == 2, timeout=10, what="routed")
        gateway.wait_generation(publish.store().generation(), timeout=10)
        victim = service.instances.filter(state=Instance.RUNNING).order_by("pk").first()
        container = docker_client.containers.get(victim.instance_id)
        with Traffic(gateway.port, service.service_id, PREDICT_BODY) as traffic:
            wait_for(lambda: traffic.ok() >= 20, timeout=30, what="traffic flows")
            hit = time.monotonic()
            container.pause()
            assert for_node(victim.node).inspect(victim.instance_id).state == PAUSED
            wait_for(
                lambda: victim.instance_id not in _routed(service),
                timeout=5 * SLACK + 10,
                every=0.02,
                what="paused: out of the routes",
            )
            out = time.monotonic() - hit
            wait_for(
                lambda: Instance.objects.get(pk=victim.pk).state == Instance.FAILED
                and _converged(service, 2)
                and len(_routed(service)) == 2,
                timeout=10 * SLACK + 30,
                every=0.1,
                what="paused: replaced",
            )
            replaced = time.monotonic() - hit
            time.sleep(1.0)
        failed = traffic.failures(since=hit)
        late = [r for r in failed if r[0] > hit + out + 1.0]
        report(
            f"docker pause a runtime: {len(failed)} request(s) failed "
            f"({', '.join(sorted({str(r[2]) for r in failed})) or 'none'}), "
            f"{traffic.ok(since=hit)} succeeded; out of the routes after {out:.2f} s (target 5 s),"
            f" replaced after {replaced:.2f} s (target 10 s); failures started after the route "
            f"change: {len(late)}"
        )
        assert out <= 5 * SLACK and replaced <= 10 * SLACK + 20
        assert late == [], late[:5]
        assert not docker_client.containers.list(all=True, filters={"name": victim.instance_id})
        # the probe round or a reconcile pass (whichever inspects it first) says it is paused
        said = list(
            service.events.filter(
                instance_id=victim.instance_id, kind__in=("unhealthy", "crashed")
            ).values_list("message", flat=True)
        )
        assert any("paused" in message for message in said), said
        for message in said:
            report(f"event: {message.splitlines()[0]}")
    finally:
        gateway.stop()
