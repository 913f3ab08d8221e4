"""The control plane at scale: queries per service that do not grow with the total.

On the scale harness (``serving.backends.simulated``, installed for every node by the
``simulated`` fixture): the fleet pass (``reconcile_all``), the route publication
(``publish_all``), the service list page and API. The numbers at 10,000 services are in
docs/benchmarks.md (``bench/controlplane_bench.py``); here the *counts* are pinned, so an N+1
cannot come back unnoticed.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from gateway.routes import make_route, open_store
from serving import backends, publish, reconciler
from serving.backends.base import InstanceSpec
from serving.backends.simulated import SimulatedBackend
from serving.models import Instance, Node, Revision, Service
from serving.reconciler import support
from tests.serving.conftest import make_group

DIGEST = "5ca1e" * 12 + "abcd"


@pytest.fixture
def simulated(serving_env):
    made: dict[str, SimulatedBackend] = {}

    def factory(node):
        return made.setdefault(node.name, SimulatedBackend(node=node.name))

    with backends.override(factory):
        yield made


@pytest.fixture
def world(owner, serving_env, simulated, settings):
    """``add(n, running=True)`` bulk-creates n services of one replica on a 4-node group:
    running (listed by the harness, status Normal) or pending (status Waiting)."""
    from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment

    group = make_group(tenant=owner.tenant, cpu=10**6, memory=10**6, nodes=4)
    nodes = list(group.nodes.order_by("pk"))
    for node in nodes:
        (settings.EMS_MODEL_CACHE_DIR / node.name / DIGEST).mkdir(parents=True)
    region = Region.objects.get(name="ap-beijing")
    config = ModelConfig.objects.create(tenant=owner.tenant, name="scale", region=region)
    version = ModelConfigVersion.objects.create(
        tenant=owner.tenant,
        config=config,
        number=1,
        runtime=RuntimeEnvironment.objects.get(tenant__isnull=True, name="angel"),
        address="cos://scale/",
        bucket="scale",
        key_prefix="scale/",
        manifest_digest=DIGEST,
        validation_status="skipped",
    )

    def add(count: int, *, running: bool = True) -> list[Service]:
        tag = uuid.uuid4().hex[:4]
        services = Service.objects.bulk_create(
            Service(
                tenant=owner.tenant,
                name=f"s-{tag}-{i}",
                service_id=f"ems-{tag}{i:04d}",
                region=region,
                group=group,
                config=config,
                status=Service.NORMAL if running else Service.WAITING,
            )
            for i in range(count)
        )
        revisions = Revision.objects.bulk_create(
            Revision(service=s, number=1, version=version, cpu_millicores=100, memory_mib=128)
            for s in services
        )
        for service, revision in zip(services, revisions, strict=True):
            service.revision = revision
        Service.objects.bulk_update(services, ["revision"])
        rows = []
        for i, (service, revision) in enumerate(zip(services, revisions, strict=True)):
            node = nodes[i % len(nodes)]
            row = Instance(
                tenant=owner.tenant,
                service=service,
                revision=revision,
                node=node,
                instance_id=f"{service.service_id}-000001",
                cpu_millicores=100,
                memory_mib=128,
            )
            if running:
                spec = InstanceSpec(
                    service_id=service.service_id,
                    instance_id=row.instance_id,
                    tenant_id=owner.tenant.app_id,
                    runtime="angel",
                    model_digest=DIGEST,
                )
                status = backends.for_node(node).add(spec)
                row.state, row.address, row.backend_id = (
                    "running",
                    status.address,
                    status.backend_id,
                )
                row.started_at = row.ready_at = status.started_at
            rows.append(row)
        Instance.objects.bulk_create(rows)
        for row in rows:  # their claims, as scheduling.claim would have made them
            Node.objects.filter(pk=row.node_id).update(
                claimed_cpu_millicores=F("claimed_cpu_millicores") + 100,
                claimed_memory_mib=F("claimed_memory_mib") + 128,
            )
        return services

    add.group, add.nodes = group, nodes
    return add


def queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured)


def test_a_fleet_pass_over_quiet_services_costs_the_same_queries_at_any_size(world):
    world(20)
    publish.publish_all()
    small = queries(reconciler.reconcile_all)
    world(60)
    publish.publish_all()
    large = queries(reconciler.reconcile_all)
    assert large == small <= 8, (small, large)
    assert set(reconciler.reconcile_all().values()) == {reconciler.IDLE}


def test_services_with_work_cost_a_bounded_number_of_queries_each(world):
    world(20)
    publish.publish_all()
    world(10, running=False)
    launch_10 = queries(reconciler.reconcile_all)
    healthy_10 = queries(reconciler.reconcile_all)
    world(40, running=False)
    launch_50 = queries(reconciler.reconcile_all)
    healthy_50 = queries(reconciler.reconcile_all)
    per_launch = (launch_50 - launch_10) / 40
    per_healthy = (healthy_50 - healthy_10) / 40
    assert per_launch <= 16 and per_healthy <= 18, (per_launch, per_healthy)
    assert Service.objects.filter(status=Service.NORMAL).count() == 70
    assert len(publish.store().all()) == 70


def test_publication_costs_the_same_queries_at_any_size_and_matches_each_route(world):
    small = world(20)
    assert queries(publish.publish_all) <= 4
    world(60)
    Service.objects.filter(pk=small[0].pk).update(auth_enabled=True)  # a route with a token
    from serving.access import token_issue

    token_issue(service=Service.objects.get(pk=small[0].pk))
    with CaptureQueriesContext(connection) as captured:
        counts = publish.publish_all()
    assert len(captured) <= 4 and counts["written"] == 61, counts
    stored = publish.store().all()
    for service in Service.objects.select_related("tenant"):
        expected = dict(publish.route_for(service), generation=0)
        assert dict(stored[service.service_id], generation=0) == expected
    assert publish.publish_all() == {"written": 0, "deleted": 0, "unchanged": 80}


def test_a_deleted_service_loses_its_route_in_the_publication(world):
    services = world(3)
    publish.publish_all()
    Service.objects.filter(pk=services[0].pk).update(desired=Service.DELETE)
    assert publish.publish_all()["deleted"] == 1
    assert services[0].service_id not in publish.store().all()


def test_what_the_fleet_pass_notices_without_a_query_per_service(world, simulated):
    """A crashed instance, an orphan and a held lease each make a service not quiet."""
    crashed, orphaned, leased, calm = world(4)
    publish.publish_all()
    node_of = {i.service_id: i.node for i in Instance.objects.select_related("node")}
    simulated[node_of[crashed.pk].name].crash(f"{crashed.service_id}-000001")
    stray = InstanceSpec(
        service_id=orphaned.service_id,
        instance_id=f"{orphaned.service_id}-stray1",
        tenant_id="1",
        runtime="angel",
        model_digest=DIGEST,
    )
    backends.for_node(node_of[orphaned.pk]).add(stray)
    owner_token = support.take_lease(leased.pk)
    results = reconciler.reconcile_all()
    assert results[calm.pk] == reconciler.IDLE
    assert results[leased.pk] == reconciler.BUSY
    assert results[orphaned.pk] == reconciler.IDLE
    assert backends.for_node(node_of[orphaned.pk]).inspect(stray.instance_id).state == "missing"
    assert orphaned.events.filter(kind="orphan-removed").exists()
    failed = Instance.objects.get(instance_id=f"{crashed.service_id}-000001")
    assert failed.state == Instance.FAILED and results[crashed.pk] == reconciler.PROGRESSING
    support.drop_lease(leased.pk, owner_token)


def test_a_stray_on_a_node_is_swept_from_the_same_listing(world, simulated):
    world(2)
    node = world.nodes[0]
    spec = InstanceSpec(
        service_id="ems-gone0000",
        instance_id="ems-gone0000-aaaaaa",
        tenant_id="1",
        runtime="angel",
        model_digest=DIGEST,
    )
    backends.for_node(node).add(spec)
    reconciler.reconcile_all()
    assert backends.for_node(node).inspect(spec.instance_id).state == "missing"
    assert Node.objects.filter(pk=node.pk).exists()


def test_list_page_and_api_cost_the_same_queries_whatever_the_page_or_total(owner, world):
    world(20)
    small_page = queries(lambda: owner.client.get("/services/"))
    small_api = queries(lambda: owner.api.get("/api/v1/services/"))
    world(100)
    large_page = queries(lambda: owner.client.get("/services/"))
    large_api = queries(lambda: owner.api.get("/api/v1/services/"))
    second = queries(lambda: owner.api.get("/api/v1/services/?page=2"))
    assert small_page == large_page and small_api == large_api == second, (
        small_page,
        large_page,
        small_api,
        large_api,
        second,
    )
    body = owner.api.get("/api/v1/services/").json()
    assert body["count"] == 120 and len(body["results"]) == 50
    assert {row["instances_ready"] for row in body["results"]} == {1}


@pytest.fixture(params=["file", "redis"])
def store(request, tmp_path):
    if request.param == "file":
        yield open_store(f"file://{tmp_path}/routes.json")
        return
    import os

    from tests.conftest import service_missing

    url = os.environ.get("REDIS_URL")
    if not url:
        service_missing("no REDIS_URL set")
    prefix = f"ems:test:{uuid.uuid4().hex[:8]}:"
    target = open_store(f"{url}{'&' if '?' in url else '?'}prefix={prefix}")
    yield target
    for key in target.r.scan_iter(match=prefix + "*"):
        target.r.delete(key)
    target.close()


def _route(sid, port):
    url = f"http://127.0.0.1:{port}"
    return make_route(
        service_id=sid,
        tenant_id=1,
        auth=False,
        instances=[{"id": "i", "url": url, "state": "healthy"}],
    )


def test_publish_many_writes_only_over_the_record_it_read(store):
    first = store.publish(_route("ems-aaaa0001", 1))
    # read at generation `first`; meanwhile someone publishes a newer record
    newer = store.publish(_route("ems-aaaa0001", 2))
    applied = store.publish_many(
        [
            ("ems-aaaa0001", first, _route("ems-aaaa0001", 3)),  # stale: left alone
            ("ems-aaaa0002", 0, _route("ems-aaaa0002", 4)),  # new
            ("ems-aaaa0003", 0, None),  # nothing to delete: skipped
        ]
    )
    assert applied == 1
    assert store.get("ems-aaaa0001")["generation"] == newer
    assert store.get("ems-aaaa0001")["instances"][0]["url"].endswith(":2")
    assert store.get("ems-aaaa0002")["generation"] == store.generation() == newer + 1
    gen = store.get("ems-aaaa0002")["generation"]
    assert store.publish_many([("ems-aaaa0002", gen, None)]) == 1
    assert store.get("ems-aaaa0002") is None


@pytest.mark.django_db(transaction=True)
def test_services_with_work_are_reconciled_a_few_at_a_time(world, simulated, settings):
    """On their own connections (threads), each under its own lease: every instance is
    launched exactly once and every service ends Normal."""
    settings.EMS_SERVING_RECONCILE_THREADS = 4
    world(3)
    pending = world(12, running=False)
    results = reconciler.reconcile_all()
    assert {results[s.pk] for s in pending} == {reconciler.PROGRESSING}
    results = reconciler.reconcile_all()
    assert set(results.values()) == {reconciler.IDLE}
    assert Service.objects.filter(status=Service.NORMAL).count() == 15
    listed = [s.instance_id for b in simulated.values() for s in b.list()]
    assert len(listed) == len(set(listed)) == 15
    assert sorted(listed) == sorted(
        Instance.objects.filter(state=Instance.RUNNING).values_list("instance_id", flat=True)
    )
    assert not Service.objects.exclude(lease_owner="").exists()
