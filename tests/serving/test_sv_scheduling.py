"""Capacity claims: concurrent deploys never overcommit a node; releases happen once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from serving import scheduling
from serving.models import Node
from tests.serving.conftest import make_group


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_overcommit(serving_env):
    group = make_group(cpu=3000, memory=100_000, nodes=2)  # room for 3 + 3 instances of 1 core
    won, lost, errors = [], [], []
    barrier = threading.Barrier(10)

    def claim():
        try:
            barrier.wait()
            node = scheduling.claim(group, (1000, 512, 0))
            won.append(node.name)
        except scheduling.InsufficientResources as exc:
            lost.append(exc.message)
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(won) == 6 and len(lost) == 4
    assert all("insufficient resources: needs 1000m CPU" in message for message in lost)
    for node in Node.objects.filter(group=group):
        assert node.claimed_cpu_millicores == 3000 <= node.capacity_cpu_millicores
        assert node.claimed_memory_mib == 1536


def test_claims_spread_and_refuse_clearly(serving_env):
    group = make_group(cpu=2000, memory=4096, nodes=2)
    first = scheduling.claim(group, (1000, 1024, 0))
    second = scheduling.claim(group, (1000, 1024, 0))
    assert first.pk != second.pk  # the node with the most free CPU first
    with pytest.raises(scheduling.InsufficientResources, match=r"needs 1 GPU, the group .* has 0"):
        scheduling.claim(group, (1000, 1024, 1))
    with pytest.raises(scheduling.InsufficientResources, match="largest node"):
        scheduling.claim(group, (4000, 1024, 0))
    scheduling.claim(group, (1000, 1024, 0))
    scheduling.claim(group, (1000, 1024, 0))
    with pytest.raises(scheduling.InsufficientResources) as info:
        scheduling.claim(group, (1000, 1024, 0))
    assert "needs 1000m CPU, 1024 MiB memory, free 0m CPU, 2048 MiB memory" in info.value.message


def test_public_quota_sizes():
    assert scheduling.quota_size("cpu", 2) == (2000, 4096, 0)
    assert scheduling.quota_size("gpu", 1) == (4000, 16384, 1)


@pytest.mark.django_db(transaction=True)
def test_a_claim_is_released_once_even_when_released_twice_at_once(owner, angel_version, dedicated):
    """Two workers both decide to release the same instance (a retried pass, a double stop):
    the node gets the capacity back once, never twice (which would let it overcommit)."""
    from serving import services
    from serving.models import Instance

    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=dedicated,
        name="twice",
        size=services.InstanceSize(cpu_millicores=500, memory_mib=512),
        scaling=services.Scaling(replicas=2),
    )
    node = dedicated.nodes.get()
    node.refresh_from_db()
    assert (node.claimed_cpu_millicores, node.claimed_memory_mib) == (1000, 1024)
    victim = service.instances.order_by("pk").first()
    assert victim.holds_claim
    results, errors = [], []
    barrier = threading.Barrier(6)

    def release():
        try:
            instance = Instance.objects.get(pk=victim.pk)  # each worker its own copy
            barrier.wait()
            results.append(scheduling.release(instance))
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=release) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [False] * 5 + [True]
    node.refresh_from_db()
    assert (node.claimed_cpu_millicores, node.claimed_memory_mib) == (500, 512)  # once
    again = Instance.objects.get(pk=victim.pk)
    assert again.holds_claim is False
    assert scheduling.release(again) is False  # and later: no-op
    other = service.instances.exclude(pk=victim.pk).get()
    assert scheduling.release(other) is True and other.holds_claim is False  # in memory too
    node.refresh_from_db()
    assert node.claimed_cpu_millicores == 0


def test_claim_many_is_all_or_nothing_with_a_count(serving_env):
    from django.db import transaction

    group = make_group(cpu=2000, memory=4096, nodes=1)
    node = group.nodes.get()
    with pytest.raises(scheduling.InsufficientResources) as info, transaction.atomic():
        scheduling.claim_many(group, (1000, 1024, 0), 3)
    assert "2 of the 3 instances fit" in info.value.message
    node.refresh_from_db()
    assert node.claimed_cpu_millicores == 0  # the caller's atomic block took the two back
    assert [n.pk for n in scheduling.claim_many(group, (1000, 1024, 0), 2)] == [node.pk] * 2


def test_every_dimension_and_only_active_nodes_count(serving_env):
    from serving.models import Node

    group = make_group(cpu=4000, memory=1024, gpus=1, nodes=1)
    Node.objects.create(
        group=group,
        name=f"{group.name}-off",
        backend="process",
        capacity_cpu_millicores=64000,
        capacity_memory_mib=65536,
        capacity_gpus=8,
        is_active=False,
    )
    with pytest.raises(scheduling.InsufficientResources, match="largest node"):
        scheduling.claim(group, (1000, 2048, 0))  # memory: only the inactive node has it
    with pytest.raises(scheduling.InsufficientResources, match="largest node"):
        scheduling.claim(group, (8000, 512, 0))  # CPU: likewise
    first = scheduling.claim(group, (1000, 512, 1))
    assert first.is_active and (first.claimed_gpus, first.claimed_memory_mib) == (1, 512)
    with pytest.raises(scheduling.InsufficientResources, match="1 GPU"):
        scheduling.claim(group, (1000, 512, 1))  # the one GPU is taken
    with pytest.raises(scheduling.InsufficientResources):
        scheduling.claim(group, (1000, 768, 0))  # 512 MiB left
    assert scheduling.claim(group, (1000, 512, 0)).claimed_memory_mib == 1024  # exactly full


def test_an_instance_the_size_of_a_whole_node_fits_exactly(serving_env):
    group = make_group(cpu=4000, memory=8192, gpus=2, nodes=1)
    node = scheduling.claim(group, (4000, 8192, 2))
    assert node.free == (0, 0, 0)
    with pytest.raises(scheduling.InsufficientResources):
        scheduling.claim(group, (100, 128, 0))


def test_one_instance_that_does_not_fit_gets_the_plain_message(serving_env):
    group = make_group(cpu=1000, memory=1024, nodes=1)
    scheduling.claim(group, (1000, 1024, 0))
    with pytest.raises(scheduling.InsufficientResources) as info:
        scheduling.claim_many(group, (1000, 1024, 0), 1)
    assert "instances fit" not in info.value.message  # no "0 of the 1" for a single one


def test_releasing_a_gpu_instance_gives_the_gpu_back(owner, angel_version, serving_env):
    from serving import services
    from tests.serving.conftest import make_group as group_of

    group = group_of(tenant=owner.tenant, cpu=4000, memory=8192, gpus=1)
    service = services.service_deploy(
        actor=owner.membership,
        version=angel_version,
        group=group,
        name="gpu",
        size=services.InstanceSize(cpu_millicores=1000, memory_mib=1024, gpus=1),
    )
    node = group.nodes.get()
    node.refresh_from_db()
    assert node.claimed_gpus == 1
    assert scheduling.release(service.instances.get()) is True
    node.refresh_from_db()
    assert (node.claimed_cpu_millicores, node.claimed_memory_mib, node.claimed_gpus) == (0, 0, 0)
