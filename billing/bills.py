"""Monthly bills: the open month computed live, a closed month written once as a final bill.

Lines: one per service with usage in the month (the sum of its usage rows' amounts, exact to
10 places), one per purchase starting in the month, and adjustment lines added later. The
**total** is the sum of the lines rounded half-up to the cent — the only rounding on a bill.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import CENT, Bill, BillLine, MeterState, Purchase, UsageDaily


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(start: datetime | date):
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    if isinstance(start, datetime):
        return datetime(year, month, 1, tzinfo=UTC)
    return date(year, month, 1)


def add_months(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def parse_month(text: str | None) -> date:
    """``YYYY-MM`` → the month's first day; a clear error otherwise."""
    try:
        year, month = (int(part) for part in (text or "").split("-"))
        return date(year, month, 1)
    except (ValueError, TypeError):
        raise ValidationError(
            {"month": f"{text!r} is not a month: write YYYY-MM, e.g. 2026-11."}
        ) from None


def round_cent(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class BillView:
    month: date
    status: str  # open | final
    currency: str
    lines: list[dict] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return round_cent(sum((line["amount"] for line in self.lines), Decimal(0)))

    @property
    def usage_total(self) -> Decimal:
        return sum((x["amount"] for x in self.lines if x["kind"] == "usage"), Decimal(0))


def _bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    return start, next_month(start)


def usage_lines(tenant_id, month: date) -> list[dict]:
    from serving.models import Service

    start, end = _bounds(month)
    sums = (
        UsageDaily.objects.filter(tenant_id=tenant_id, day__gte=start.date(), day__lt=end.date())
        .values("service_id")
        .annotate(seconds=Sum("seconds"), amount=Sum("amount"))
        .order_by("service_id")
    )
    sums = [row for row in sums if row["seconds"] or row["amount"]]
    names = dict(
        (pk, (sid, name, kind))
        for pk, sid, name, kind in Service.objects.filter(pk__in=[r["service_id"] for r in sums])
        .values_list("pk", "service_id", "name", "kind")
        .iterator()
    )
    lines = []
    for row in sums:
        service_id, name, kind = names[row["service_id"]]
        if kind == Service.BATCH:  # a batch job's instances: the bill names the job
            name = f"job {name}"
        lines.append(
            {
                "kind": BillLine.USAGE,
                "service_pk": row["service_id"],
                "service_id": service_id,
                "purchase_id": None,
                "description": f"{name} ({service_id}): usage",
                "seconds": int(row["seconds"]),
                "amount": Decimal(row["amount"]),
            }
        )
    return lines


def purchase_lines(tenant_id, month: date) -> list[dict]:
    start, end = _bounds(month)
    rows = Purchase.objects.filter(
        tenant_id=tenant_id, starts_at__gte=start, starts_at__lt=end
    ).select_related("group")
    return [
        {
            "kind": BillLine.PURCHASE,
            "service_pk": None,
            "service_id": None,
            "purchase_id": p.pk,
            "description": (
                f"dedicated group {p.group.name}: {p.spec}, {p.months} month(s) "
                f"{p.starts_at:%Y-%m-%d} to {p.ends_at:%Y-%m-%d}"
                + (" (renewal)" if p.renewal_of_id else "")
            ),
            "seconds": 0,
            "amount": Decimal(p.price),
        }
        for p in rows
    ]


def _stored(bill: Bill) -> list[dict]:
    return [
        {
            "kind": line.kind,
            "service_pk": line.service_id,
            "service_id": line.service.service_id if line.service_id else None,
            "purchase_id": line.purchase_id,
            "description": line.description,
            "seconds": line.seconds,
            "amount": line.amount,
        }
        for line in bill.lines.select_related("service").order_by("kind", "id")
    ]


def bill_view(tenant_id, month: date) -> BillView:
    bill = Bill.objects.filter(tenant_id=tenant_id, month=month).first()
    if bill is not None:
        return BillView(month, "final", bill.currency, _stored(bill))
    lines = usage_lines(tenant_id, month) + purchase_lines(tenant_id, month)
    return BillView(month, "open", settings.EMS_BILLING_CURRENCY, lines)


def finalize(tenant_id, month: date) -> Bill | None:
    """Write the final bill of a closed month once (unique per tenant and month)."""
    view = bill_view(tenant_id, month)
    if view.status == "final":
        return Bill.objects.get(tenant_id=tenant_id, month=month)
    try:
        with transaction.atomic():
            bill = Bill.objects.create(
                tenant_id=tenant_id,
                month=month,
                currency=view.currency,
                finalized_at=timezone.now(),
            )
            BillLine.objects.bulk_create(
                BillLine(
                    bill=bill,
                    kind=line["kind"],
                    service_id=line["service_pk"],
                    purchase_id=line["purchase_id"],
                    description=line["description"][:300],
                    seconds=line["seconds"],
                    amount=line["amount"],
                )
                for line in view.lines
            )
    except IntegrityError:  # a concurrent run finalized it
        return Bill.objects.get(tenant_id=tenant_id, month=month)
    return bill


def close_months(now: datetime | None = None) -> int:
    """Finalize the previous month's bills once it has ended, the delay has passed and the
    meter has closed its last window."""
    now = now or timezone.now()
    current = month_start(now)
    if now < current + timedelta(seconds=settings.EMS_BILLING_FINALIZE_DELAY_SECONDS):
        return 0
    state = MeterState.objects.filter(name="usage").first()
    if state is None or state.watermark < current:
        return 0
    previous = month_start(current - timedelta(days=1)).date()
    start, end = _bounds(previous)
    tenants = set(
        UsageDaily.objects.filter(day__gte=start.date(), day__lt=end.date()).values_list(
            "tenant_id", flat=True
        )
    ) | set(
        Purchase.objects.filter(starts_at__gte=start, starts_at__lt=end).values_list(
            "tenant_id", flat=True
        )
    )
    done = set(Bill.objects.filter(month=previous).values_list("tenant_id", flat=True))
    made = 0
    for tenant_id in sorted(tenants - done):
        finalize(tenant_id, previous)
        made += 1
    return made


def month_to_date(tenant_id, now: datetime | None = None) -> Decimal:
    """Usage of the current month so far plus its purchases (exact, not rounded)."""
    now = now or timezone.now()
    view = bill_view(tenant_id, month_start(now).date())
    return sum((line["amount"] for line in view.lines), Decimal(0))


def daily_costs(tenant_id, month: date) -> list[tuple[date, Decimal]]:
    start, end = _bounds(month)
    rows = dict(
        UsageDaily.objects.filter(tenant_id=tenant_id, day__gte=start.date(), day__lt=end.date())
        .values("day")
        .annotate(amount=Sum("amount"))
        .values_list("day", "amount")
    )
    out, day = [], start.date()
    while day < end.date():
        out.append((day, rows.get(day, Decimal(0))))
        day += timedelta(days=1)
    return out


def service_cost(service, now: datetime | None = None) -> dict:
    """A service's usage cost so far (all time and this month), rounded to the cent."""
    now = now or timezone.now()
    first = month_start(now).date()
    rows = UsageDaily.objects.filter(service=service)
    total = rows.aggregate(a=Sum("amount"))["a"] or Decimal(0)
    month = rows.filter(day__gte=first).aggregate(a=Sum("amount"))["a"] or Decimal(0)
    return {
        "total": round_cent(total),
        "month": round_cent(month),
        "currency": settings.EMS_BILLING_CURRENCY,
        "dedicated": not service.group.is_public,
    }
