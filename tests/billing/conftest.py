"""Fixtures of the billing tests: regions and runtimes, a public group with a default price
list, and services/instances written as the reconciler writes them (real rows, real times)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

_seq = itertools.count()


@pytest.fixture
def catalogue(db):
    from models_repo import bootstrap

    bootstrap.run(demo=False, log=lambda line: None)


@pytest.fixture
def public_group(catalogue):
    from tests.serving.conftest import make_group

    return make_group(tenant=None, cpu=10_000_000, memory=100_000_000, gpus=1000)


def set_price(quota_type: str, price: str, effective_from: datetime, region="ap-beijing"):
    from billing.models import Price
    from models_repo.models import Region

    return Price.objects.create(
        region=Region.objects.get(name=region),
        quota_type=quota_type,
        unit_price_per_hour=Decimal(price),
        currency="CNY",
        effective_from=effective_from,
    )


@pytest.fixture
def prices(catalogue):
    return [
        set_price("cpu", "0.120000", datetime(2000, 1, 1, tzinfo=UTC)),
        set_price("gpu", "6.000000", datetime(2000, 1, 1, tzinfo=UTC)),
    ]


def make_version(tenant):
    from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment

    config = ModelConfig.objects.create(
        tenant=tenant,
        name=f"cfg{next(_seq)}",
        region=Region.objects.get(name="ap-beijing"),
        last_version=1,
    )
    return ModelConfigVersion.objects.create(
        tenant=tenant,
        config=config,
        number=1,
        runtime=RuntimeEnvironment.objects.get(tenant__isnull=True, name="angel"),
        address="cos://models/x/",
        bucket="models",
        key_prefix="x/",
        manifest=[],
        manifest_digest="0" * 64,
        validation_status=ModelConfigVersion.SKIPPED,
    )


def make_service(member, group, *, quota_type="cpu", quota_count=2, version=None, name=None):
    """A service row with its revision, as ``service_deploy`` leaves it (no instances)."""
    from serving.models import Revision, Service
    from serving.scheduling import quota_size

    version = version or make_version(member.tenant)
    service = Service.objects.create(
        tenant=member.tenant,
        name=name or f"svc{next(_seq)}",
        region=version.config.region,
        group=group,
        config=version.config,
        created_by=member,
    )
    cpu, memory, gpus = quota_size(quota_type, quota_count) if group.is_public else (500, 512, 0)
    revision = Revision.objects.create(
        service=service,
        number=1,
        version=version,
        cpu_millicores=cpu,
        memory_mib=memory,
        gpus=gpus,
        quota_type=quota_type if group.is_public else "",
        quota_count=quota_count if group.is_public else 0,
    )
    Service.objects.filter(pk=service.pk).update(revision=revision)
    service.revision = revision
    return service


def make_instance(service, started_at=None, stopped_at=None, state=None):
    from serving.models import Instance

    revision = service.revision
    return Instance.objects.create(
        tenant_id=service.tenant_id,
        service=service,
        revision=revision,
        node=service.group.nodes.first(),
        instance_id=f"{service.service_id}-{uuid.uuid4().hex[:6]}",
        cpu_millicores=revision.cpu_millicores,
        memory_mib=revision.memory_mib,
        gpus=revision.gpus,
        state=state or (Instance.STOPPED if stopped_at else Instance.RUNNING),
        started_at=started_at,
        stopped_at=stopped_at,
        holds_claim=False,
    )


def start_meter(at: datetime):
    from billing.models import MeterState

    MeterState.objects.update_or_create(name="usage", defaults={"watermark": at})


# the serving tests' fixtures: real config versions in local storage, process nodes
from tests.serving.conftest import angel_version, dedicated, serving_env  # noqa: E402, F401
