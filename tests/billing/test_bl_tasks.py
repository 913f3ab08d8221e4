"""The beat tasks run the same services and are safe to run twice; the admin's export action."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing import tasks
from billing.models import MeterState, UsageRecord
from tests.billing.conftest import make_instance, make_service


def test_meter_and_housekeeping_tasks_are_safe_twice(owner, public_group, prices, settings):
    settings.EMS_METERING_LAG_SECONDS = 0
    service = make_service(owner.membership, public_group)
    make_instance(service, started_at=timezone.now() - timedelta(minutes=5))
    tasks.meter()
    rows = UsageRecord.objects.count()
    assert rows >= 4 and MeterState.objects.get().watermark <= timezone.now()
    tasks.meter()
    assert UsageRecord.objects.count() in (rows, rows + 1)  # at most the next minute
    assert tasks.housekeeping() == tasks.housekeeping()


def test_admin_exports_a_bill_and_adds_an_adjustment(owner, catalogue, admin_client):
    from datetime import UTC, date, datetime

    from billing import bills, services
    from billing.models import Bill, BillLine
    from tests.serving.conftest import make_group

    group = make_group(tenant=owner.tenant)
    services.purchase_create(
        operator=None,
        group=group,
        months=1,
        price="100.00",
        starts_at=datetime(2026, 1, 3, tzinfo=UTC),
        cores_per_node=2,
        memory_gib_per_node=4,
    )
    bill = bills.finalize(owner.tenant.pk, date(2026, 1, 1))
    res = admin_client.post(
        "/admin/billing/bill/",
        {"action": "export_csv", "_selected_action": [bill.pk]},
        follow=True,
    )
    assert res.status_code == 200 and "/billing/exports/" in res.content.decode()
    res = admin_client.post(
        f"/admin/billing/bill/{bill.pk}/change/",
        {"adjust-amount": "-5.00", "adjust-description": "service credit"},
    )
    assert res.status_code == 302
    line = BillLine.objects.get(kind="adjustment")
    assert line.amount == -5 and line.description == "service credit"
    assert bills.bill_view(owner.tenant.pk, date(2026, 1, 1)).total == 95
    assert Bill.objects.count() == 1
