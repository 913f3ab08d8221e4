"""End to end on the process backend (real runtime processes): a service on a public group runs
for a measured time and appears on the bill as exactly price × count × time; a service on a
bought dedicated group shows only the purchase; a used-up budget refuses the next deploy."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from billing import bills, metering, services
from billing.models import UsageRecord
from serving import services as serving
from serving.models import Service
from serving.services import InstanceSize
from tests.billing.conftest import set_price
from tests.serving.conftest import cleanup_group, converge, make_group, status_is


def test_measured_running_time_is_billed_exactly(
    owner, angel_version, dedicated, catalogue, settings
):
    settings.EMS_METERING_WINDOW_SECONDS = 10
    settings.EMS_METERING_LAG_SECONDS = 0
    from datetime import UTC, datetime

    # 3600 per unit-hour = 1 per unit-second, so the bill reads in seconds
    set_price("cpu", "3600.000000", datetime(2000, 1, 1, tzinfo=UTC))
    public = make_group(tenant=None, cpu=4000, memory=8192)
    try:
        began = time.monotonic()
        service = serving.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=public,
            name="metered",
            size=InstanceSize(quota_type="cpu", quota_count=1),
        )
        converge(service, status_is(Service.NORMAL), what="Normal")
        time.sleep(3)
        serving.service_stop(actor=owner.membership, service=service)
        converge(service, status_is(Service.STOPPED), what="Stopped")
        measured = time.monotonic() - began
        instance = service.instances.get()
        billed = int(
            (
                instance.stopped_at.replace(microsecond=0)
                - instance.started_at.replace(microsecond=0)
            ).total_seconds()
        )
        assert 3 <= billed <= measured + 1

        # the dedicated group, bought: its service accrues nothing, the purchase is the line
        services.purchase_create(
            operator=None,
            group=dedicated,
            months=1,
            price="250.00",
            starts_at=timezone.now() - timedelta(minutes=1),
            cores_per_node=4,
            memory_gib_per_node=8,
        )
        on_dedicated = serving.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=dedicated,
            name="bought",
            size=InstanceSize(cpu_millicores=500, memory_mib=512),
        )
        converge(on_dedicated, status_is(Service.NORMAL), what="Normal on dedicated")

        metering.run(now=timezone.now() + timedelta(seconds=20))
        view = bills.bill_view(owner.tenant.pk, bills.month_start(timezone.now()).date())
        usage = [x for x in view.lines if x["kind"] == "usage"]
        assert [(x["service_id"], x["seconds"]) for x in usage] == [(service.service_id, billed)]
        assert usage[0]["amount"] == Decimal(3600) * 1 * billed / 3600
        purchases = [x for x in view.lines if x["kind"] == "purchase"]
        assert [x["amount"] for x in purchases] == [Decimal("250.00")]
        assert view.total == Decimal(billed) + Decimal("250.00")
        assert not UsageRecord.objects.filter(service=on_dedicated).exists()

        # a budget with stop at 100%, already used up: the next deploy is refused
        services.budget_set(actor=owner.membership, monthly_amount=str(billed), stop_at_limit=True)
        res = owner.api.post(
            "/api/v1/services/",
            {
                "name": "refused",
                "version": angel_version.pk,
                "resource_group": public.pk,
                "quota_type": "cpu",
                "quota_count": 1,
            },
            format="json",
        )
        assert res.status_code == 409
        assert "monthly budget" in res.json()["detail"]
        assert f"{Decimal(billed) + 250:.2f} CNY spent this month" in res.json()["detail"]
        serving.service_stop(actor=owner.membership, service=on_dedicated)
        converge(on_dedicated, status_is(Service.STOPPED), what="Stopped on dedicated")
    finally:
        cleanup_group(public)
