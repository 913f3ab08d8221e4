"""The meter's exactly-once guarantees: a replay, a worker killed mid-window, two runs racing on
PostgreSQL, a price change inside a window, dedicated groups accruing nothing, and the number of
queries per batch pinned."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from billing import metering
from billing.models import MeterState, UsageDaily, UsageRecord
from tests.billing.conftest import make_instance, make_service, set_price, start_meter

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


class Killed(BaseException):
    """Stands for the worker dying (os._exit) half-way through a window."""


def totals():
    rows = UsageRecord.objects.aggregate(
        s=Sum("seconds"), p=Sum("price_seconds"), n=Sum("quota_count")
    )
    daily = UsageDaily.objects.aggregate(s=Sum("seconds"), a=Sum("amount"))
    return rows["s"], rows["p"], UsageRecord.objects.count(), daily["s"], daily["a"]


@pytest.fixture
def running(owner, public_group, prices, settings):
    settings.EMS_METERING_WINDOW_SECONDS = 60
    settings.EMS_METERING_LAG_SECONDS = 0
    service = make_service(owner.membership, public_group, quota_count=3)
    for offset in (0, 17, 125):
        make_instance(service, started_at=T0 + timedelta(seconds=offset, microseconds=400_000))
    make_instance(
        service, started_at=T0 + timedelta(seconds=5), stopped_at=T0 + timedelta(seconds=200)
    )
    start_meter(T0)
    return service


def test_a_replay_changes_nothing(running):
    first = metering.run(now=T0 + timedelta(minutes=10))
    assert first["windows"] == 10
    before = totals()
    again = metering.run(now=T0 + timedelta(minutes=10))
    assert again["windows"] == 0 and totals() == before
    # closing an already closed window is refused by the watermark claim
    assert metering.close_window(T0) is None
    assert totals() == before
    # 3 units x 0.12/h; (600-0)+(600-17)+(600-125)+(200-5) seconds (starts truncated)
    assert before[0] == 600 + 583 + 475 + 195
    assert before[1] == Decimal("0.12") * 3 * (600 + 583 + 475 + 195)


def test_a_worker_killed_mid_window_leaves_no_gap_and_no_double(running, monkeypatch):
    clean = None
    metering.run(now=T0 + timedelta(minutes=3))
    real = metering._add_daily
    calls = {"n": 0}

    def dying(deltas):
        calls["n"] += 1
        real(deltas)
        if calls["n"] == 1:
            raise Killed  # rows written, daily sums moved, then the worker dies

    monkeypatch.setattr(metering, "_add_daily", dying)
    with pytest.raises(Killed):
        metering.run(now=T0 + timedelta(minutes=6))
    assert MeterState.objects.get().watermark == T0 + timedelta(minutes=3)  # rolled back
    monkeypatch.setattr(metering, "_add_daily", real)
    metering.run(now=T0 + timedelta(minutes=6))
    metering.run(now=T0 + timedelta(minutes=6))
    killed = totals()
    # the same history metered without a crash
    UsageRecord.objects.all().delete()
    UsageDaily.objects.all().delete()
    start_meter(T0)
    metering.run(now=T0 + timedelta(minutes=6))
    clean = totals()
    assert killed == clean
    assert UsageRecord.objects.values("instance", "window_start").distinct().count() == clean[2]


def test_a_price_change_inside_a_window_splits_it(running):
    set_price("cpu", "0.300000", T0 + timedelta(minutes=1, seconds=20))
    metering.run(now=T0 + timedelta(minutes=3))
    service = running
    first = service.instances.order_by("started_at").first()
    row = UsageRecord.objects.get(instance=first, window_start=T0 + timedelta(minutes=1))
    assert row.seconds == 60
    assert [s["seconds"] for s in row.segments] == [20, 40]
    assert row.price_seconds == Decimal("0.12") * 3 * 20 + Decimal("0.3") * 3 * 40
    assert row.amount == (row.price_seconds / 3600).quantize(Decimal("1e-10"))


def test_dedicated_groups_and_stopped_services_accrue_nothing(owner, prices, settings):
    from tests.serving.conftest import make_group

    settings.EMS_METERING_LAG_SECONDS = 0
    dedicated = make_group(tenant=owner.tenant)
    service = make_service(owner.membership, dedicated)
    make_instance(service, started_at=T0)
    start_meter(T0)
    metering.run(now=T0 + timedelta(minutes=5))
    assert not UsageRecord.objects.exists()


def test_queries_per_window_are_constant_per_batch(owner, public_group, prices, settings):
    settings.EMS_METERING_WINDOW_SECONDS = 60
    service = make_service(owner.membership, public_group, quota_count=1)
    from serving.models import Instance

    def add(n):
        base = make_instance(service, started_at=T0)
        Instance.objects.bulk_create(
            Instance(
                tenant_id=base.tenant_id,
                service=service,
                revision=base.revision,
                node=base.node,
                instance_id=f"{base.instance_id}-{i}",
                cpu_millicores=1000,
                memory_mib=2048,
                state="running",
                started_at=T0,
                holds_claim=False,
            )
            for i in range(n - 1)
        )

    add(1500)
    start_meter(T0)
    book = metering.PriceBook()
    with CaptureQueriesContext(connection) as small:
        assert metering.close_window(T0, book) == 1500
    add(1000)
    with CaptureQueriesContext(connection) as large:
        assert metering.close_window(T0 + timedelta(minutes=1), book) == 2500
    # claim + instances + existing rows + one upsert per 1,000 rows + one daily upsert
    # (+ savepoint statements of the atomic block on the test's transaction)
    assert len(small) == len(large) - 1
    assert len([q for q in large if "INSERT INTO" in q["sql"]]) == 3 + 1


@pytest.mark.django_db(transaction=True)
def test_two_meter_runs_racing_give_the_same_totals(owner, public_group, prices, settings, request):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL only (CI runs it there)")
    settings.EMS_METERING_WINDOW_SECONDS = 60
    settings.EMS_METERING_LAG_SECONDS = 0
    service = make_service(owner.membership, public_group, quota_count=2)
    for offset in range(0, 300, 7):
        make_instance(service, started_at=T0 + timedelta(seconds=offset))
    start_meter(T0)
    errors = []
    barrier = threading.Barrier(2)

    def meter():
        try:
            barrier.wait()
            metering.run(now=T0 + timedelta(minutes=30))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=meter) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    raced = totals()
    UsageRecord.objects.all().delete()
    UsageDaily.objects.all().delete()
    start_meter(T0)
    metering.run(now=T0 + timedelta(minutes=30))
    assert raced == totals()
    assert MeterState.objects.get().watermark == T0 + timedelta(minutes=30)
