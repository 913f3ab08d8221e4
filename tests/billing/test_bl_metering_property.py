"""Property: for random start/stop sequences across window and month boundaries and price
changes — some stops and starts recorded only after their windows closed — the meter's billed
seconds equal the true overlap to the second and its amounts equal price × count × seconds.

The oracle walks every second of the metered range (nothing shared with the meter's code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing import metering
from billing.models import UsageDaily, UsageRecord
from tests.billing.conftest import make_instance, make_service, set_price, start_meter

BASE = datetime(2026, 1, 31, 23, 50, tzinfo=UTC)  # 10 minutes before a month ends
SPAN = 25 * 60  # metered range: 25 one-minute windows
END = BASE + timedelta(seconds=SPAN)
MIDDLE = BASE + timedelta(seconds=12 * 60)  # the first meter run stops here

offset = st.integers(min_value=0, max_value=SPAN + 120)
micros = st.integers(min_value=0, max_value=999_999)
instance = st.tuples(
    offset,  # start (seconds from BASE)
    st.one_of(st.none(), st.integers(min_value=0, max_value=SPAN + 60)),  # run length
    micros,
    micros,
    st.integers(min_value=1, max_value=4),  # quota count
    st.sampled_from(["now", "late-stop", "late-start"]),  # when the reconciler records it
)
price_change = st.tuples(
    st.integers(min_value=0, max_value=SPAN), st.integers(min_value=0, max_value=500_000)
)


def at(seconds: int, micro: int = 0) -> datetime:
    return BASE + timedelta(seconds=seconds, microseconds=micro)


def price_at(changes, second: datetime) -> Decimal:
    current = Decimal("0.120000")
    for moment, price in changes:  # ascending
        if moment <= second:
            current = price
    return current


@pytest.mark.django_db
@hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    instances=st.lists(instance, min_size=1, max_size=4), changes=st.lists(price_change, max_size=3)
)
def test_billed_seconds_and_amounts_equal_the_truth(
    owner, public_group, prices, settings, instances, changes
):
    settings.EMS_METERING_WINDOW_SECONDS = 60
    settings.EMS_METERING_LAG_SECONDS = 0
    with transaction.atomic():
        moments = {}
        for second, price in changes:
            moments[at(second)] = Decimal(price) / Decimal(1_000_000)
        for moment, price in moments.items():
            set_price("cpu", str(price), moment)
        changes_sorted = sorted(moments.items())
        service = make_service(owner.membership, public_group, quota_count=1)
        truth = {}
        late = []
        for start, length, start_us, stop_us, count, when in instances:
            from serving.models import Revision

            revision = Revision.objects.create(
                service=service,
                number=Revision.objects.filter(service=service).count() + 1,
                version=service.revision.version,
                cpu_millicores=1000 * count,
                memory_mib=2048 * count,
                quota_type="cpu",
                quota_count=count,
            )
            service.revision = revision
            started = at(start, start_us)
            stopped = None if length is None else at(start + length, stop_us)
            row = make_instance(
                service,
                started_at=None if when == "late-start" else started,
                stopped_at=None if when == "late-stop" else stopped,
            )
            if when != "now":
                late.append((row, started, stopped))
            # the oracle: every whole second of the billed span inside [BASE, END)
            first = max(started.replace(microsecond=0), BASE)
            last = END if stopped is None else min(stopped.replace(microsecond=0), END)
            seconds, price_seconds, second = 0, Decimal(0), first
            while second < last:
                seconds += 1
                price_seconds += price_at(changes_sorted, second) * count
                second += timedelta(seconds=1)
            truth[row.pk] = (seconds, price_seconds)

        start_meter(BASE)
        metering.run(now=MIDDLE)
        for row, started, stopped in late:  # the reconciler records what it saw late
            row.started_at, row.stopped_at = started, stopped
            row.save(update_fields=["started_at", "stopped_at"])
        metering.run(now=END)
        metering.run(now=END)  # a replay changes nothing

        for pk, (seconds, price_seconds) in truth.items():
            rows = UsageRecord.objects.filter(instance_id=pk)
            sums = rows.aggregate(s=Sum("seconds"), p=Sum("price_seconds"))
            assert (sums["s"] or 0) == seconds, f"instance {pk}"
            assert (sums["p"] or Decimal(0)) == price_seconds, f"instance {pk}"
            for r in rows:
                assert r.window_end - r.window_start == timedelta(seconds=60)
                assert 0 < r.seconds <= 60
                assert r.amount == metering.to_amount(r.price_seconds)
                if not r.segments:
                    assert r.price_seconds == r.unit_price_per_hour * r.quota_count * r.seconds
        total = UsageRecord.objects.filter(service=service).aggregate(
            s=Sum("seconds"), a=Sum("amount")
        )
        daily = UsageDaily.objects.filter(service=service).aggregate(
            s=Sum("seconds"), a=Sum("amount")
        )
        assert (daily["s"] or 0) == (total["s"] or 0)
        assert (daily["a"] or 0) == (total["a"] or 0)
        transaction.set_rollback(True)
