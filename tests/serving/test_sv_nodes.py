"""Nodes as an operator manages them (default run, runtime processes behind a real gateway):
clear refusals of bad TLS material and of an unreachable engine, a draining node takes no new
instances and its instances move with zero failed requests, a down node's instances leave the
route at once and are replaced elsewhere without counting as the service's failures, and
removing a node is refused while it holds instances. The same on two real Docker engines:
``test_sv_remote_nodes_e2e.py``."""

from __future__ import annotations

import pytest

from serving import nodes, publish, reconciler, scheduling, services
from serving.models import Instance, Node
from serving.services import InstanceSize, Scaling
from tests.serving import gateway_flow as flow
from tests.serving.conftest import cleanup_group, converge, make_group
from tests.serving.helpers import LR_BODY, lr_pred
from tests.serving.remote_engine import NODE_ADDR, make_certs

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)


def test_adding_a_node_refuses_bad_tls_and_an_unreachable_engine(owner, serving_env):
    group = make_group(tenant=owner.tenant, backend="docker", nodes=0)
    certs, other = make_certs(NODE_ADDR), make_certs(NODE_ADDR)
    common = dict(group=group, name="bad", engine_url="tcp://127.0.0.1:1")  # nothing there
    with pytest.raises(nodes.NodeError, match="needs TLS"):
        nodes.node_add(**common)
    with pytest.raises(nodes.NodeError, match="starts with tcp://"):
        nodes.node_add(**{**common, "engine_url": "http://x:2376"})
    with pytest.raises(nodes.NodeError, match="not a PEM certificate"):
        nodes.node_add(**common, tls_ca="junk", tls_cert=certs.cert, tls_key=certs.key)
    with pytest.raises(nodes.NodeError, match="not an unencrypted PEM private key"):
        nodes.node_add(**common, tls_ca=certs.ca, tls_cert=certs.cert, tls_key="junk")
    with pytest.raises(nodes.NodeError, match="does not belong to the client certificate"):
        nodes.node_add(**common, tls_ca=certs.ca, tls_cert=certs.cert, tls_key=other.key)
    with pytest.raises(nodes.NodeError, match="not issued by this CA"):
        nodes.node_add(**common, tls_ca=other.ca, tls_cert=certs.cert, tls_key=certs.key)
    with pytest.raises(nodes.NodeError, match=r"unreachable \(is dockerd listening there\?\)"):
        nodes.node_add(**common, tls_ca=certs.ca, tls_cert=certs.cert, tls_key=certs.key)
    assert not Node.objects.filter(name="bad").exists()


def test_drain_moves_instances_with_zero_failures_and_down_replaces_them(
    owner, angel_version, serving_env, patient_gateway
):
    gateway = patient_gateway
    group = make_group(tenant=owner.tenant, backend="process", cpu=2000, memory=4096, nodes=2)
    first, second = group.nodes.order_by("name")
    try:
        service = services.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=group,
            name="lr-nodes",
            size=SIZE,
            scaling=Scaling(replicas=2),
        )
        converge(service, flow.normal_with(2), what="Normal with 2")
        assert {i.node_id for i in flow.running(service)} == {first.pk, second.pk}
        with pytest.raises(nodes.NodeError, match="drain it first"):
            nodes.node_remove(first)

        # drain: no new instances there, the existing one moves; no request fails
        flow.settle(gateway)  # the route has landed at the gateway
        with flow.Loop(gateway, service, "", LR_BODY) as loop:
            loop.wait_ok(10)
            nodes.node_drain(first)
            assert list(scheduling.schedulable(group)) == [second]
            converge(
                service,
                lambda s: len(flow.running(s)) == 2
                and all(i.node_id == second.pk for i in flow.running(s))
                and not s.instances.filter(node=first, state__in=Instance.LIVE).exists(),
                what="moved off the draining node",
            )
            flow.settle(gateway)
            loop.wait_ok(10)
        assert loop.failures == [] and loop.ok >= 20
        nodes.node_undrain(first)

        # down: out of the route at once, replaced on the other node, not a service failure
        second.refresh_from_db()
        Node.objects.filter(pk=second.pk).update(state=Node.DOWN)
        second.refresh_from_db()
        nodes.mark_down(second, "test: the host is gone")
        route = publish.route_for(service)
        assert route["instances"] == []
        assert nodes.NODE in set(service.events.values_list("kind", flat=True))
        converge(
            service,
            lambda s: len(flow.running(s)) == 2
            and all(i.node_id == first.pk for i in flow.running(s)),
            what="replaced on the node that is up",
        )
        service.refresh_from_db()
        assert service.failures == 0
        flow.settle(gateway)
        assert lr_pred(f"{gateway.url}/{service.service_id}") is not None
        reconciler.reconcile(service.pk)
    finally:
        Node.objects.filter(group=group).update(state=Node.UP)
        cleanup_group(group)


def test_the_node_admin_adds_through_the_service_and_drains(owner, serving_env, django_user_model):
    """The admin form asks the engine: an unreachable one is a form error on the URL, no row;
    the list shows state and capacity; drain / undrain / remove are actions (remove refused
    with the reason while the node holds instances)."""
    from django.test import Client
    from django.urls import reverse

    user = django_user_model.objects.create_superuser("op", "op@example.com", "Op-Pass-123!")
    client = Client()
    client.force_login(user)
    group = make_group(tenant=owner.tenant, backend="docker", nodes=1)
    node = group.nodes.get()
    certs = make_certs(NODE_ADDR)
    answer = client.post(
        reverse("admin:serving_node_add"),
        {
            "group": group.pk,
            "name": "far",
            "engine_url": "tcp://127.0.0.1:1",
            "publish_host": "127.0.0.1",
            "advertise_host": "",
            "capacity_gpus": 0,
            "tls_ca": certs.ca,
            "tls_cert": certs.cert,
            "tls_key": certs.key,
        },
    )
    assert answer.status_code == 200
    assert "is unreachable (is dockerd listening there?)" in answer.content.decode()
    assert not Node.objects.filter(name="far").exists()
    answer = client.post(
        reverse("admin:serving_node_add"),
        {
            "group": group.pk,
            "name": "far",
            "engine_url": "tcp://127.0.0.1:1",
            "publish_host": "127.0.0.1",
            "capacity_gpus": 0,
        },
    )
    assert "a tcp:// engine needs TLS" in answer.content.decode()

    changelist = reverse("admin:serving_node_changelist")
    page = client.get(changelist).content.decode()
    assert node.name in page and "Capacity (claimed / total)" in page
    client.post(changelist, {"action": "drain", "_selected_action": [node.pk]}, follow=True)
    node.refresh_from_db()
    assert node.state == Node.DRAINING
    client.post(changelist, {"action": "undrain", "_selected_action": [node.pk]}, follow=True)
    node.refresh_from_db()
    assert node.state == Node.UP
    page = client.post(
        changelist, {"action": "remove", "_selected_action": [node.pk]}, follow=True
    ).content.decode()
    assert "removed" in page and not Node.objects.filter(pk=node.pk).exists()
    # the operator's actions are in the admin's history: who, what, on which node
    from django.contrib.admin.models import LogEntry

    history = list(
        LogEntry.objects.filter(object_id=str(node.pk), content_type__model="node")
        .order_by("pk")
        .values_list("user__username", "change_message")
    )
    assert history == [
        ("op", "draining; its instances are being moved"),
        ("op", "takes new instances again"),
        ("op", "removed"),
    ]
