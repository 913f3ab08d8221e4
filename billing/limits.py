"""The limits billing puts on starting instances: an expired dedicated-group purchase, a monthly
budget used up (with stop at 100% on), and a sub-account's maximum quota count.

Serving calls :func:`check_start` from deploy, scale and resume (inside their transaction, before
capacity is claimed); the autoscaler calls :func:`replicas_allowed` to cap its target. A refusal
is a :class:`LimitExceeded` (an ``InsufficientResources``, so the API answers 409 and the pages
show the message) naming the limit and by how much it is exceeded.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from serving.scheduling import InsufficientResources


class LimitExceeded(InsufficientResources):
    """Starting more would break a billing limit (permanent until the limit changes)."""


def current_purchase(group, now=None):
    """The purchase covering ``now``; None when the group has one but none covers now, and
    ``True`` for a group that was never bought (operator-made groups run without one)."""
    from billing.models import Purchase

    now = now or timezone.now()
    rows = Purchase.objects.filter(group=group)
    if not rows.exists():
        return True
    return rows.filter(starts_at__lte=now, ends_at__gt=now).first()


def _purchase_message(group) -> str | None:
    if group.is_public:
        return None
    if current_purchase(group):
        return None
    last = group.purchases.order_by("-ends_at").first()
    return (
        f"the purchase of the dedicated group {group.name} ended on "
        f"{last.ends_at:%Y-%m-%d %H:%M} UTC: renew it to start instances on it "
        f"(POST /api/v1/resource-groups/{group.pk}/purchases/)"
    )


def _budget_message(tenant_id) -> str | None:
    from billing.bills import month_to_date, round_cent
    from billing.models import Budget

    budget = Budget.objects.filter(tenant_id=tenant_id, stop_at_limit=True).first()
    if budget is None:
        return None
    spent = round_cent(month_to_date(tenant_id))
    if spent < budget.monthly_amount:
        return None
    return (
        f"the monthly budget of {budget.monthly_amount} {budget.currency} is used up: "
        f"{spent} {budget.currency} spent this month, {spent - budget.monthly_amount} over; "
        "raise the budget or turn its stop off"
    )


def quota_held(member) -> int:
    """Quota units held now by live instances of the public-group services ``member`` made."""
    from serving.models import Instance

    held = Instance.objects.filter(
        service__created_by=member,
        service__deleted_at__isnull=True,
        state__in=Instance.ACTIVE,
        revision__quota_count__gt=0,
    ).aggregate(total=Sum("revision__quota_count"))["total"]
    return int(held or 0)


def _quota_limit(member):
    from billing.models import QuotaLimit

    if member is None or getattr(member, "kind", None) == "main":
        return None
    return QuotaLimit.objects.filter(member=member).first()


def check_start(*, actor, group, quota_count: int, instances: int, service=None) -> None:
    """Refuse starting ``instances`` more instances of ``quota_count`` units on ``group``."""
    message = _purchase_message(group)
    if message is None and group.is_public and instances > 0:
        message = _budget_message(group.tenant_id if group.tenant_id else actor.tenant_id)
        member = service.created_by if service is not None else actor
        limit = _quota_limit(member)
        if message is None and limit is not None:
            held, need = quota_held(member), quota_count * instances
            if held + need > limit.max_quota_count:
                message = (
                    f"the sub-account {member.name} may hold {limit.max_quota_count} quota "
                    f"units: it holds {held} and this needs {need} more "
                    f"({held + need - limit.max_quota_count} over the limit)"
                )
    if message is not None and instances > 0:
        raise LimitExceeded(message)


def replicas_allowed(service, wanted: int) -> tuple[int, str]:
    """How many replicas the limits allow the autoscaler (never fewer than now); with the
    reason when it is capped."""
    from serving.models import Instance

    current = service.instances.filter(state__in=Instance.ACTIVE, revision=service.revision).count()
    if wanted <= current:
        return wanted, ""
    group, revision = service.group, service.revision
    message = _purchase_message(group)
    if message is None and group.is_public:
        message = _budget_message(service.tenant_id)
    if message is not None:
        return current, message
    limit = _quota_limit(service.created_by) if group.is_public else None
    if limit is None or not revision.quota_count:
        return wanted, ""
    room = (limit.max_quota_count - quota_held(service.created_by)) // revision.quota_count
    allowed = current + max(room, 0)
    if allowed >= wanted:
        return wanted, ""
    return allowed, (
        f"capped at {allowed} by the quota limit of {service.created_by.name} "
        f"({limit.max_quota_count} units): {wanted - allowed} replica(s) short"
    )


def estimate(*, group, quota_type: str, quota_count: int, replicas: int, max_replicas=None):
    """What a deploy would cost per hour now: price × quota count × replicas on a public group;
    0 on a dedicated group (its purchase covers it)."""
    from django.conf import settings

    from billing.metering import PriceBook

    currency = settings.EMS_BILLING_CURRENCY
    if not group.is_public:
        return {
            "per_hour": Decimal(0),
            "per_hour_max": Decimal(0),
            "unit_price_per_hour": Decimal(0),
            "currency": currency,
            "replicas": replicas,
            "note": f"included in the purchase of the dedicated group {group.name}",
        }
    now = timezone.now()
    seg = PriceBook().segments(group.region_id, quota_type, now, now + timedelta(seconds=1))[0]
    price = seg[2]
    return {
        "per_hour": price * quota_count * replicas,
        "per_hour_max": price * quota_count * (max_replicas or replicas),
        "unit_price_per_hour": price,
        "currency": seg[3],
        "replicas": replicas,
        "note": f"{quota_count} {quota_type} quota unit(s) × {replicas} instance(s) × {price}/h",
    }
