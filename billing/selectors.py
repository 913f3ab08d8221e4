"""Read queries of the billing app, always through the tenant-scoping choke point."""

from __future__ import annotations

from datetime import UTC, datetime

from billing import bills
from billing.models import BillingEvent, Budget, Purchase, QuotaLimit, UsageDaily, UsageRecord


def usage(*, actor, month=None, service_id: str | None = None):
    rows = UsageRecord.objects.for_actor(actor, "billing:DescribeUsage").select_related(
        "service", "instance"
    )
    if month is not None:
        start = datetime(month.year, month.month, 1, tzinfo=UTC)
        rows = rows.filter(window_start__gte=start, window_start__lt=bills.next_month(start))
    if service_id:
        rows = rows.filter(service__service_id=service_id)
    return rows.order_by("window_start", "instance_id")


def purchases(*, actor, group):
    return (
        Purchase.objects.for_actor(actor, "billing:DescribePurchases")
        .filter(group=group)
        .select_related("group")
        .order_by("-starts_at")
    )


def budget(*, actor) -> Budget | None:
    return Budget.objects.for_actor(actor, "billing:DescribeBudgets").first()


def quota_limits(*, actor):
    return (
        QuotaLimit.objects.for_actor(actor, "billing:DescribeBudgets")
        .select_related("member")
        .order_by("member__name")
    )


def events(*, actor, limit: int = 20):
    return BillingEvent.objects.for_actor(actor, "billing:DescribeBills")[:limit]


def bill_months(*, actor) -> list:
    """Months with a final bill, and the current month (open)."""
    from billing.models import Bill

    months = set(
        Bill.objects.for_actor(actor, "billing:DescribeBills").values_list("month", flat=True)
    )
    months.add(bills.month_start(datetime.now(UTC)).date())
    # closed months whose bills are not final yet
    months |= set(
        UsageDaily.objects.for_actor(actor, "billing:DescribeBills").dates("day", "month")
    )
    return sorted(months, reverse=True)
