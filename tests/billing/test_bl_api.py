"""The billing API: prices, usage, bills (open and final, adjustments), exports that parse back
to the bill, budget, purchases, the estimate on the services API, and the policies."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.storage import storages

from billing import bills, exports, metering, services
from billing.models import Bill
from tests.billing.conftest import make_instance, make_service, start_meter

T0 = datetime(2026, 2, 27, 22, 0, tzinfo=UTC)
MONTH = date(2026, 2, 1)


@pytest.fixture
def billed(owner, public_group, prices, settings, tmp_path):
    """Two services with odd running times in February 2026, metered; a dedicated purchase."""
    from tests.serving.conftest import make_group

    settings.EMS_METERING_WINDOW_SECONDS = 60
    settings.EMS_METERING_LAG_SECONDS = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "billing_exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "exports")},
        },
    }
    storages._storages.pop("billing_exports", None)
    a = make_service(owner.membership, public_group, quota_count=3, name="alpha")
    b = make_service(owner.membership, public_group, quota_type="gpu", quota_count=1, name="beta")
    make_instance(
        a,
        started_at=T0 + timedelta(seconds=7, microseconds=5),
        stopped_at=T0 + timedelta(hours=5, seconds=13),
    )
    make_instance(
        a, started_at=T0 + timedelta(minutes=3), stopped_at=T0 + timedelta(minutes=77, seconds=1)
    )
    make_instance(
        b,
        started_at=T0 + timedelta(minutes=30, seconds=59),
        stopped_at=T0 + timedelta(hours=1, minutes=1, seconds=2),
    )
    start_meter(T0)
    metering.run(now=T0 + timedelta(hours=6))
    group = make_group(tenant=owner.tenant)
    purchase = services.purchase_create(
        operator=None, group=group, months=2, price="1500.00",
        starts_at=datetime(2026, 2, 10, tzinfo=UTC), cores_per_node=16, memory_gib_per_node=64,
    )  # fmt: skip
    yield {"a": a, "b": b, "group": group, "purchase": purchase}
    storages._storages.pop("billing_exports", None)


def expected_total():
    seconds_a = (5 * 3600 + 13 - 7) + (77 * 60 + 1 - 180)  # both instances of alpha
    seconds_b = 61 * 60 + 2 - (30 * 60 + 59)
    exact = Decimal("0.12") * 3 * seconds_a / 3600 + Decimal("6") * 1 * seconds_b / 3600
    return seconds_a, seconds_b, exact


def test_prices_and_usage(owner, billed):
    body = owner.api.get("/api/v1/prices/").json()
    rows = body["results"] if isinstance(body, dict) else body
    cpu = next(r for r in rows if r["region"] == "ap-beijing" and r["quota_type"] == "cpu")
    assert cpu["unit_price_per_hour"] == "0.120000" and cpu["currency"] == "CNY"
    sid = billed["b"].service_id
    res = owner.api.get(f"/api/v1/usage/?month=2026-02&service={sid}")
    assert res.status_code == 200
    rows = res.json()["results"]
    assert {r["service_id"] for r in rows} == {sid}
    assert sum(r["seconds"] for r in rows) == expected_total()[1]
    assert isinstance(rows[0]["amount"], str) and rows[0]["unit_price_per_hour"] == "6.000000"
    assert owner.api.get("/api/v1/usage/?month=2026-13").status_code == 400


def test_open_bill_final_bill_and_adjustments(owner, billed, settings):
    seconds_a, seconds_b, exact = expected_total()
    body = owner.api.get("/api/v1/bills/2026-02/").json()
    assert body["status"] == "open"
    by_kind = {}
    for line in body["lines"]:
        by_kind.setdefault(line["kind"], []).append(line)
    usage = {line["service_id"]: line for line in by_kind["usage"]}
    assert usage[billed["a"].service_id]["seconds"] == seconds_a
    assert usage[billed["b"].service_id]["seconds"] == seconds_b
    assert [p["amount"] for p in by_kind["purchase"]] == ["1500.0000000000"]
    want = bills.round_cent(exact + Decimal("1500"))
    assert Decimal(body["total"]) == want
    # March: the month closes, the bill becomes final, later changes are adjustment lines
    settings.EMS_BILLING_FINALIZE_DELAY_SECONDS = 0
    metering.run(now=datetime(2026, 3, 1, 0, 5, tzinfo=UTC))
    assert bills.close_months(datetime(2026, 3, 1, 0, 5, tzinfo=UTC)) == 1
    assert bills.close_months(datetime(2026, 3, 1, 0, 6, tzinfo=UTC)) == 0
    final = owner.api.get("/api/v1/bills/2026-02/").json()
    assert final["status"] == "final" and Decimal(final["total"]) == want
    services.bill_adjust(
        operator=None, bill=Bill.objects.get(), amount="-10.00", description="goodwill"
    )
    again = owner.api.get("/api/v1/bills/2026-02/").json()
    assert Decimal(again["total"]) == want - 10
    assert [x["kind"] for x in again["lines"]].count("adjustment") == 1
    listed = owner.api.get("/api/v1/bills/").json()
    assert {"2026-02"} <= {b["month"] for b in listed}


def test_exports_parse_back_to_the_bill(owner, billed):
    view = bills.bill_view(owner.tenant.pk, MONTH)
    res = owner.api.get("/api/v1/bills/2026-02/export/?format=csv")
    assert res.status_code == 200, res.content
    url = res.json()["url"]
    download = owner.client.get(url[url.index("/billing/") :])
    assert download.status_code == 200
    text = b"".join(download.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == exports.BILL_COLUMNS
    total = rows[-1]
    assert total["kind"] == "total" and Decimal(total["amount"]) == view.total
    lines = sum(Decimal(r["amount"]) for r in rows[:-1])
    assert bills.round_cent(lines) == view.total
    # usage CSV: the rows sum to the usage lines exactly
    res = owner.api.get("/api/v1/bills/2026-02/export/?format=csv&kind=usage")
    url = res.json()["url"]
    text = b"".join(owner.client.get(url[url.index("/billing/") :]).streaming_content).decode()
    usage = list(csv.DictReader(io.StringIO(text)))
    assert sum(Decimal(r["amount"]) for r in usage) == view.usage_total
    # XLSX: both sheets
    from openpyxl import load_workbook

    res = owner.api.get("/api/v1/bills/2026-02/export/?format=xlsx")
    url = res.json()["url"]
    data = b"".join(owner.client.get(url[url.index("/billing/") :]).streaming_content)
    book = load_workbook(io.BytesIO(data), read_only=True)
    bill_rows = list(book["Bill"].iter_rows(values_only=True))
    assert list(bill_rows[0]) == exports.BILL_COLUMNS
    assert Decimal(bill_rows[-1][6]) == view.total
    usage_rows = list(book["Usage"].iter_rows(values_only=True))[1:]
    assert sum(Decimal(r[8]) for r in usage_rows) == view.usage_total
    assert owner.api.get("/api/v1/bills/2026-02/export/?format=pdf").status_code == 400


def test_an_export_link_is_short_lived_and_tenant_bound(owner, outsider, billed, settings):
    link = exports.export(tenant=owner.tenant, month=MONTH, fmt="csv")["url"]
    assert outsider.client.get(link).status_code == 404
    assert owner.client.get(link + "x/").status_code == 404
    settings.EMS_BILLING_EXPORT_LINK_SECONDS = -1
    assert owner.client.get(link).status_code == 404


def test_billing_page_and_service_cost(owner, billed):
    page = owner.client.get("/billing/?month=2026-02")
    assert page.status_code == 200
    text = page.content.decode()
    view = bills.bill_view(owner.tenant.pk, MONTH)
    assert str(view.total) in text and "alpha" in text and "Daily cost" in text
    detail = owner.client.get(f"/services/{billed['a'].service_id}/")
    assert "Cost so far" in detail.content.decode()


def test_budget_api(owner, sub_account, make_sub_account):
    res = owner.api.post(
        "/api/v1/budget/",
        {
            "monthly_amount": "100.00",
            "thresholds": [80, 50, 100],
            "stop_at_limit": True,
            "quota_limits": [{"member": sub_account.membership.pk, "max_quota_count": 4}],
        },
        format="json",
    )
    assert res.status_code == 200, res.content
    body = owner.api.get("/api/v1/budget/").json()
    assert body["monthly_amount"] == "100.00" and body["thresholds"] == [50, 80, 100]
    assert body["quota_limits"] == [{"member": sub_account.membership.pk, "max_quota_count": 4}]
    bad = owner.api.post("/api/v1/budget/", {"monthly_amount": "-1"}, format="json")
    assert bad.status_code == 400
    # EMSFullAccess has no billing actions; BillingReadOnlyAccess reads but cannot set
    assert sub_account.api.get("/api/v1/budget/").status_code == 403
    reader = make_sub_account(name="accountant", policies=("BillingReadOnlyAccess",))
    assert reader.api.get("/api/v1/budget/").status_code == 200
    assert reader.api.get("/api/v1/bills/").status_code == 200
    denied = reader.api.post("/api/v1/budget/", {"monthly_amount": "1"}, format="json")
    assert denied.status_code == 403


def test_purchases_api_renew_and_auto_renew(owner, billed):
    group, purchase = billed["group"], billed["purchase"]
    url = f"/api/v1/resource-groups/{group.pk}/purchases/"
    rows = owner.api.get(url).json()["results"]
    assert [r["price"] for r in rows] == ["1500.00"]
    res = owner.api.post(url, {"months": 1}, format="json")
    assert res.status_code == 201, res.content
    renewal = res.json()
    assert renewal["price"] == "750.00" and renewal["renewal_of"] == purchase.pk
    # the old period ended long ago (April 2026): the renewal starts now, for one month
    ended = owner.api.get(f"{url}{purchase.pk}/").json()
    assert ended["status"] == "renewed" and renewal["starts_at"] > ended["ends_at"]
    assert renewal["status"] == "active"
    res = owner.api.patch(f"{url}{purchase.pk}/", {"auto_renew": True}, format="json")
    assert res.status_code == 200 and res.json()["auto_renew"] is True
    assert owner.api.post(url, {"months": 99}, format="json").status_code == 400


def test_estimate(owner, public_group, prices):
    body = {
        "name": "x",
        "version": 1,
        "resource_group": public_group.pk,
        "quota_type": "gpu",
        "quota_count": 2,
        "replicas": 3,
    }
    res = owner.api.post("/api/v1/services/estimate/", body, format="json")
    assert res.status_code == 200, res.content
    assert Decimal(res.json()["per_hour"]) == Decimal("36")
    auto = {**body, "scaling_mode": "auto", "start_replicas": 1, "max_replicas": 4}
    res = owner.api.post("/api/v1/services/estimate/", auto, format="json")
    assert Decimal(res.json()["per_hour"]) == 12 and Decimal(res.json()["per_hour_max"]) == 48
    res = owner.api.post(
        "/api/v1/services/estimate/", {"resource_group": public_group.pk}, format="json"
    )
    assert res.status_code == 400 and "quota_type" in res.json()


def test_the_deploy_form_asks_for_the_estimate(owner, catalogue):
    page = owner.client.get("/services/new/")
    assert page.status_code == 200
    assert "/api/v1/services/estimate/" in page.content.decode()


def test_bootstrap_writes_default_prices_and_the_beat_schedule_once(catalogue):
    from django_celery_beat.models import PeriodicTask

    from billing import bootstrap
    from billing.models import Price
    from models_repo.models import Region

    lines = []
    bootstrap.run(demo=False, log=lines.append)
    bootstrap.run(demo=False, log=lines.append)
    regions = Region.objects.filter(is_active=True).count()
    assert Price.objects.count() == 2 * regions
    tasks = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"billing.meter", "billing.housekeeping"} <= tasks
    assert sum("scheduled" in line for line in lines) == 2


def test_price_set_refuses_the_metered_past(owner, catalogue, prices):
    from django.core.exceptions import ValidationError
    from django.utils import timezone

    from billing.models import MeterState
    from models_repo.models import Region

    now = timezone.now().replace(microsecond=0)
    MeterState.objects.create(name="usage", watermark=now + timedelta(hours=1))
    region = Region.objects.get(name="ap-beijing")
    with pytest.raises(ValidationError, match="already metered"):
        services.price_set(
            operator=owner.user,
            region=region,
            quota_type="cpu",
            unit_price_per_hour="0.2",
            effective_from=now + timedelta(minutes=30),
        )
    MeterState.objects.update(watermark=now - timedelta(hours=1))
    with pytest.raises(ValidationError, match="already metered"):
        services.price_set(
            operator=owner.user,
            region=region,
            quota_type="cpu",
            unit_price_per_hour="0.2",
            effective_from=now - timedelta(minutes=30),
        )
    row = services.price_set(
        operator=owner.user,
        region=region,
        quota_type="cpu",
        unit_price_per_hour="0.2",
        effective_from=now + timedelta(days=1, microseconds=123),
    )
    assert row.effective_from == now + timedelta(days=1)
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.filter(object_id=str(row.pk), user=owner.user).exists()
    with pytest.raises(ValidationError, match="decimals"):
        services.price_set(
            operator=owner.user,
            region=region,
            quota_type="cpu",
            unit_price_per_hour="0.12345678",
            effective_from=now + timedelta(days=2),
        )
