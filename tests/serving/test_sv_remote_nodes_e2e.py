"""Two Docker hosts for real: this machine's engine and a second ``dockerd`` in its own network
namespace, reached over TCP with TLS at 10.231.0.2:2376 (``tests/serving/remote_engine.py``).

The Angel LR model (the smallest runtime image that serves a real model) is deployed with 3
replicas across both nodes; the remote node gets the model in a verified volume through its
engine's API (no shared disk). Predictions flow through a real gateway; the local node is
drained with a request loop running (zero failed requests: every instance moves to the remote
node); then the remote engine is stopped → the node is marked down after the grace period,
its instances leave the routes, and 3 replicas run again on the local node, served through the
gateway. The namespace, veth, dockerd and data root are removed at the end, even on failure.

Takes about 2–3 minutes here (the image load ~10 s of it); it prints its timings (-s).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from serving import health, nodes, publish, reconciler, services
from serving.backends import volumes
from serving.models import Instance, Node, Service
from serving.services import InstanceSize, Scaling
from tests.conftest import service_missing
from tests.serving import gateway_flow as flow
from tests.serving.conftest import (
    ANGEL_VERSION_DIR,
    converge,
    make_group,
    make_version,
)
from tests.serving.helpers import LR_BODY, angel_model, build_image, lr_reference, post_json
from tests.serving.remote_engine import NODE_ADDR, missing, remote_engine

pytestmark = pytest.mark.e2e

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)
GRACE = 5


@pytest.fixture
def two_hosts(owner, serving_env, docker_client, settings):
    if why := missing():
        service_missing(why)
    settings.EMS_NODE_DOWN_GRACE_SECONDS = GRACE
    image = build_image("angel")
    started = time.monotonic()
    with remote_engine() as engine:
        up = time.monotonic() - started
        load = engine.load_images(image)
        print(f"\n[remote nodes] second engine up in {up:.1f} s, {image} loaded in {load:.1f} s")
        group = make_group(tenant=owner.tenant, backend="docker", cpu=2000, memory=8192)
        local = group.nodes.get()
        try:
            remote = nodes.node_add(
                group=group,
                name=f"remote-{uuid.uuid4().hex[:6]}",
                engine_url=engine.url,
                publish_host=NODE_ADDR,
                tls_ca=engine.certs.ca,
                tls_cert=engine.certs.cert,
                tls_key=engine.certs.key,
            )
            yield group, local, remote, engine
        finally:
            cleanup_group_local(group, local, docker_client)


def cleanup_group_local(group, local, docker_client) -> None:
    from serving.backends import for_node

    backend = for_node(local)
    for status in backend.list():
        backend.stop(status.instance_id, grace=0)
    for network in docker_client.networks.list(names=[f"ems-runtime-{local.name}"]):
        network.remove()


def _on(service, node) -> list[Instance]:
    return list(service.instances.filter(state=Instance.RUNNING, node=node))


def _predict(gateway, service) -> float:
    url = f"{gateway.url}/{service.service_id}"
    return post_json(f"{url}/v1/models/m:predict", LR_BODY)["predictions"][0]["pred"]


def test_three_replicas_on_two_hosts_drain_and_a_host_going_down(owner, two_hosts, patient_gateway):
    gateway = patient_gateway
    group, local, remote, engine = two_hosts
    t0 = time.monotonic()
    # the node's capacity came from its engine; the TLS key is stored encrypted
    assert remote.capacity_cpu_millicores >= 1000 and remote.capacity_memory_mib > 512
    assert "BEGIN" not in remote.tls_encrypted and nodes.tls_of(remote)["key"].startswith("-----")

    version = make_version(owner, angel_model() / ANGEL_VERSION_DIR)
    expected = lr_reference(angel_model(), [1, 5, 17])
    service = services.service_deploy(
        actor=owner.membership,
        version=version,
        group=group,
        name="lr-two-hosts",
        size=SIZE,
        scaling=Scaling(replicas=3),
    )
    converge(service, flow.normal_with(3), timeout=180, what="3 replicas Normal")
    assert _on(service, local) and _on(service, remote), "placed across both nodes"
    for instance in _on(service, remote):
        assert instance.address.startswith(f"http://{NODE_ADDR}:")
    # the remote node got the model in a verified volume, not a bind mount
    remote_client = _remote_backend(remote).client
    assert volumes.digests(remote_client, node=remote.name) == [version.manifest_digest]
    mounts = remote_client.containers.get(_on(service, remote)[0].instance_id).attrs["Mounts"]
    assert mounts[0]["Type"] == "volume" and mounts[0]["Name"].startswith(volumes.PREFIX)
    assert mounts[0]["RW"] is False
    flow.settle(gateway)
    assert _predict(gateway, service) == pytest.approx(expected, rel=1e-5)
    t_deployed = time.monotonic()

    # remove is refused while the node holds instances
    with pytest.raises(nodes.NodeError, match="drain it first"):
        nodes.node_remove(local)

    # drain the local node under a steady request loop: zero failed requests
    with flow.Loop(gateway, service, "", LR_BODY) as loop:
        loop.wait_ok(20)
        nodes.node_drain(local)
        converge(
            service,
            lambda s: len(_on(s, remote)) == 3
            and not s.instances.filter(node=local, state__in=Instance.LIVE).exists(),
            timeout=180,
            what="every instance moved to the remote node",
        )
        flow.settle(gateway)
        loop.wait_ok(20)
    assert loop.failures == [], loop.failures[:5]
    assert loop.ok > 40
    t_drained = time.monotonic()
    nodes.node_undrain(local)

    # the remote engine stops: down after the grace period, replicas back on the local node
    engine.stop()
    stopped = time.monotonic()
    marked_down = back = routed_around = None
    on_remote = {i.instance_id for i in _on(service, remote)}
    deadline = stopped + 120
    while True:
        health.check_running()
        if nodes.check_nodes().get(remote.name) == Node.DOWN:
            marked_down = time.monotonic()
        published = publish.store().get(service.service_id) or {}
        if routed_around is None and not on_remote & {
            i["id"] for i in published.get("instances", [])
        }:
            routed_around = time.monotonic()
        for _ in range(2):
            reconciler.reconcile(service.pk)
        service.refresh_from_db()
        back_on_local = len(_on(service, local)) == 3 and service.status == Service.NORMAL
        if back_on_local and back is None:
            back = time.monotonic()
        if back_on_local and marked_down is not None:
            break
        assert time.monotonic() < deadline, [str(e) for e in service.events.all()[:15]]
        time.sleep(0.5)
    remote.refresh_from_db()
    assert remote.state == Node.DOWN and marked_down is not None
    assert marked_down - stopped >= GRACE - 1
    assert routed_around is not None and routed_around <= marked_down
    kinds = set(service.events.values_list("kind", flat=True))
    assert nodes.NODE in kinds
    # the gateway routes around the dead host: the route has only local instances
    route = publish.route_for(service)
    local_ids = {i.instance_id for i in _on(service, local)}
    assert {item["id"] for item in route["instances"]} == local_ids
    flow.settle(gateway)
    for _ in range(20):
        assert _predict(gateway, service) == pytest.approx(expected, rel=1e-5)

    print(
        f"[remote nodes] deploy {t_deployed - t0:.1f} s, drain {t_drained - t_deployed:.1f} s, "
        f"route without the remote instances {routed_around - stopped:.1f} s and "
        f"node down {marked_down - stopped:.1f} s (grace {GRACE} s), 3 replicas back on "
        f"the local node {back - stopped:.1f} s after the engine stopped; "
        f"{loop.ok} requests during the drain, 0 failed"
    )
    services.service_delete(actor=owner.membership, service=service)
    converge(service, lambda s: not s.instances.filter(state__in=Instance.LIVE).exists())
    print(json.dumps({"total_s": round(time.monotonic() - t0, 1)}))


def _remote_backend(node):
    from serving.backends import for_node

    return for_node(node)
