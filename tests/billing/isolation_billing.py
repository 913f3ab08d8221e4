"""What the isolation walk needs for the billing URLs (see ``tests/isolation.py``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

MONTH = date(2026, 1, 1)


def _setup(ctx):
    from billing import bills, exports, metering, services
    from billing.models import MeterState
    from models_repo import bootstrap
    from tests.billing.conftest import make_instance, make_service, set_price
    from tests.serving.conftest import make_group

    bootstrap.run(demo=False, log=lambda line: None)  # regions (this setup runs first)
    set_price("cpu", "0.120000", datetime(2000, 1, 1, tzinfo=UTC))
    public = make_group(tenant=None)
    service = make_service(ctx.victim.membership, public, name="victimbilled")
    start = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
    make_instance(service, started_at=start, stopped_at=start + timedelta(minutes=3))
    MeterState.objects.update_or_create(name="usage", defaults={"watermark": start})
    for minute in range(4):
        metering.close_window(start + timedelta(minutes=minute))
    dedicated = make_group(tenant=ctx.victim.tenant)
    purchase = services.purchase_create(
        operator=None,
        group=dedicated,
        months=1,
        price="9876.54",
        starts_at=datetime(2026, 1, 5, tzinfo=UTC),
        cores_per_node=8,
        memory_gib_per_node=16,
    )
    bill = bills.finalize(ctx.victim.tenant.pk, MONTH)
    services.budget_set(
        actor=ctx.victim.membership,
        monthly_amount="4321.09",
        email="victim-budget@example.com",
    )
    link = exports.export(tenant=ctx.victim.tenant, month=MONTH, fmt="csv")
    ctx.v.update(
        billed=service,
        dedicated=dedicated,
        purchase=purchase,
        bill=bill,
        export_token=link["url"].rstrip("/").rsplit("/", 1)[-1],
    )
    ctx.markers |= {"victimbilled", service.service_id, "9876.54", "4321.09", "victim-budget"}


def register(reg) -> None:
    reg.setup(_setup)
    from billing.models import BillingEvent, Budget, UsageRecord

    reg.objects("billing.usagerecord", lambda ctx: UsageRecord.objects.filter(
        tenant=ctx.victim.tenant).first())  # fmt: skip
    reg.objects("billing.purchase", lambda ctx: ctx.v["purchase"])
    reg.objects("billing.bill", lambda ctx: ctx.v["bill"])
    reg.objects("billing.budget", lambda ctx: Budget.objects.get(tenant=ctx.victim.tenant))
    reg.objects("billing.billingevent", lambda ctx: BillingEvent.objects.filter(
        tenant=ctx.victim.tenant).first())  # fmt: skip
    reg.objects(
        "purchase", lambda ctx: {"group_pk": ctx.v["dedicated"].pk, "pk": ctx.v["purchase"].pk}
    )

    month = {"month": f"{MONTH:%Y-%m}"}
    # the outsider's own bill of the same month: its own (empty) numbers, none of the victim's
    reg.case("bill-detail", "GET", kwargs=lambda ctx: month, expect={200})
    reg.case("bill-export", "GET", kwargs=lambda ctx: month, query="format=csv", expect={200})
    # the victim's export link through the API: another tenant's file is 404
    reg.case(
        "bill-export-file",
        "GET",
        kwargs=lambda ctx: {"token": ctx.v["export_token"]},
        expect={404},
    )
    reg.case(
        "budget-list",
        "POST",
        expect={400},
        body=lambda ctx: {
            "monthly_amount": "10.00",
            "quota_limits": [{"member": ctx.victim.membership.pk, "max_quota_count": 1}],
        },
    )
    reg.case(
        "service-estimate",
        "POST",
        expect={400},
        body=lambda ctx: {"resource_group": ctx.v["dedicated"].pk, "quota_type": "cpu"},
    )
    # pages
    reg.case("billing:overview", "GET", expect={200})
    reg.case("billing:budget", "POST", expect={302}, body=lambda ctx: {"monthly_amount": "5"})
    reg.case(
        "billing:export",
        "GET",
        kwargs=lambda ctx: {"month": f"{MONTH:%Y-%m}", "fmt": "csv"},
        expect={302},
    )
    reg.case(
        "billing:export-download",
        "GET",
        kwargs=lambda ctx: {"token": ctx.v["export_token"]},
        expect={404},
    )
