"""Every write of the billing app: prices, purchases (create, renew, auto-renew), budgets and
sub-account quota limits, bill adjustments, and the periodic system work (budget alerts and the
stop at 100%, purchase notices, renewals and expiry). Keyword-only, one transaction, audited."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import authz
from accounts.audit import record
from billing import bills
from billing.limits import current_purchase, replicas_allowed  # noqa: F401 (the autoscaler's)
from billing.models import (
    CENT,
    Bill,
    BillingEvent,
    BillLine,
    Budget,
    BudgetAlert,
    MeterState,
    Price,
    Purchase,
    QuotaLimit,
)

log = logging.getLogger(__name__)
DEFAULT_THRESHOLDS = [50, 80, 100]


def _money(value, field: str, *, places=CENT) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError({field: f"{value!r} is not an amount (e.g. 12.50)."}) from None
    if not amount.is_finite() or amount < 0:
        raise ValidationError({field: "The amount must be a number of at least 0."})
    if amount != amount.quantize(places):
        raise ValidationError({field: f"At most {abs(places.as_tuple().exponent)} decimals."})
    return amount


def _event(tenant_id, kind: str, message: str, level: str = BillingEvent.INFO) -> BillingEvent:
    return BillingEvent.objects.create(tenant_id=tenant_id, kind=kind, message=message, level=level)


# --- prices (operators) ------------------------------------------------------------------------
def price_set(
    *, operator, region, quota_type: str, unit_price_per_hour, effective_from: datetime, currency=""
) -> Price:
    """Add a price from ``effective_from`` on (operators, in the admin). A price may not start
    inside windows the meter has already closed: bills stay exact."""
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.contenttypes.models import ContentType

    from serving.scheduling import QUOTA_TYPES

    if quota_type not in QUOTA_TYPES:
        raise ValidationError({"quota_type": f"The quota type is one of {', '.join(QUOTA_TYPES)}."})
    price = _money(unit_price_per_hour, "unit_price_per_hour", places=Decimal("0.000001"))
    currency = (currency or settings.EMS_BILLING_CURRENCY).upper()
    if currency != settings.EMS_BILLING_CURRENCY:
        raise ValidationError(
            {"currency": f"Prices are in {settings.EMS_BILLING_CURRENCY} (EMS_BILLING_CURRENCY)."}
        )
    effective_from = effective_from.replace(microsecond=0)
    # Not inside closed windows (bills stay exact), nor before what a meter pass that loaded its
    # prices a moment ago may still close (it closes windows up to its own now - lag).
    state = MeterState.objects.filter(name="usage").first()
    earliest = timezone.now().replace(microsecond=0) - timedelta(
        seconds=settings.EMS_METERING_LAG_SECONDS
    )
    if state is not None:
        earliest = max(earliest, state.watermark)
    if effective_from < earliest:
        raise ValidationError(
            {
                "effective_from": (
                    f"Usage up to {earliest:%Y-%m-%d %H:%M:%S} UTC is already metered or being "
                    "metered; a new price can start from then on."
                )
            }
        )
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = Price.objects.create(
                    region=region,
                    quota_type=quota_type,
                    unit_price_per_hour=price,
                    currency=currency,
                    effective_from=effective_from,
                    created_by=operator.get_username() if operator else "system",
                )
        except IntegrityError:
            raise ValidationError(
                {"effective_from": "A price of this region and quota type starts then already."}
            ) from None
        if operator is not None and operator.pk:
            LogEntry.objects.create(
                user_id=operator.pk,
                content_type=ContentType.objects.get_for_model(Price),
                object_id=str(row.pk),
                object_repr=str(row)[:200],
                action_flag=ADDITION,
                change_message=f"price {row}",
            )
    return row


# --- purchases ---------------------------------------------------------------------------------
def purchase_create(
    *,
    operator,
    group,
    months: int,
    price,
    starts_at: datetime,
    cores_per_node: int,
    memory_gib_per_node: int,
    gpus_per_node: int = 0,
    nodes: int = 1,
    auto_renew: bool = False,
) -> Purchase:
    """Record a bought period of a dedicated group (operators, after the tenant paid)."""
    if group.is_public:
        raise ValidationError({"group": "Public groups are not bought."})
    if not 1 <= int(months) <= 36:
        raise ValidationError({"months": "A purchase is 1 to 36 months."})
    amount = _money(price, "price")
    with transaction.atomic():
        purchase = Purchase.objects.create(
            tenant_id=group.tenant_id,
            group=group,
            nodes=nodes,
            cores_per_node=cores_per_node,
            memory_gib_per_node=memory_gib_per_node,
            gpus_per_node=gpus_per_node,
            months=months,
            price=amount,
            currency=settings.EMS_BILLING_CURRENCY,
            starts_at=starts_at,
            ends_at=bills.add_months(starts_at, int(months)),
            auto_renew=auto_renew,
        )
        record(
            actor=None,
            tenant=group.tenant,
            action="billing:CreatePurchase",
            resource=purchase.resource_name,
            detail={"operator": getattr(operator, "username", "system"), "price": str(amount)},
        )
        _event(
            group.tenant_id,
            "purchase",
            f"dedicated group {group.name} bought: {purchase.spec}, {months} month(s) "
            f"until {purchase.ends_at:%Y-%m-%d}, {amount} {purchase.currency}",
        )
    return purchase


def _renew(*, previous: Purchase, months: int, actor, now: datetime, auto: bool) -> Purchase:
    start = max(previous.ends_at, now.replace(microsecond=0))
    price = (previous.price / previous.months * months).quantize(CENT)
    try:
        with transaction.atomic():
            purchase = Purchase.objects.create(
                tenant_id=previous.tenant_id,
                group=previous.group,
                nodes=previous.nodes,
                cores_per_node=previous.cores_per_node,
                memory_gib_per_node=previous.memory_gib_per_node,
                gpus_per_node=previous.gpus_per_node,
                months=months,
                price=price,
                currency=previous.currency,
                starts_at=start,
                ends_at=bills.add_months(start, months),
                auto_renew=previous.auto_renew,
                renewal_of=previous,
            )
    except IntegrityError:
        raise ValidationError("This period was renewed already.") from None
    record(
        actor=actor,
        tenant=previous.tenant,
        action="billing:RenewPurchase",
        resource=purchase.resource_name,
        detail={"months": months, "price": str(price), "automatic": auto},
    )
    _event(
        previous.tenant_id,
        "purchase-renewed",
        f"dedicated group {previous.group.name} renewed"
        + (" automatically" if auto else "")
        + f": {months} month(s) until {purchase.ends_at:%Y-%m-%d}, {price} {purchase.currency}",
    )
    return purchase


def latest_purchase(group) -> Purchase | None:
    return Purchase.objects.filter(group=group).order_by("-ends_at").first()


def purchase_renew(*, actor, group, months: int, now: datetime | None = None) -> Purchase:
    """The next period of the group's latest purchase (same spec, same monthly price)."""
    authz.check(actor, "billing:RenewPurchase", authz.resource_name(actor.tenant, "purchase"))
    if group.tenant_id != actor.tenant_id:
        raise ValidationError({"group": "No such resource group."})
    if not 1 <= int(months) <= 36:
        raise ValidationError({"months": "A renewal is 1 to 36 months."})
    previous = latest_purchase(group)
    if previous is None:
        raise ValidationError(
            {"group": f"The group {group.name} has no purchase to renew; ask the operator."}
        )
    with transaction.atomic():
        return _renew(
            previous=previous,
            months=int(months),
            actor=actor,
            now=now or timezone.now(),
            auto=False,
        )


def purchase_set_auto_renew(*, actor, purchase: Purchase, auto_renew: bool) -> Purchase:
    authz.check(actor, "billing:RenewPurchase", purchase)
    with transaction.atomic():
        Purchase.objects.filter(pk=purchase.pk).update(auto_renew=bool(auto_renew))
        purchase.auto_renew = bool(auto_renew)
        record(
            actor=actor,
            action="billing:RenewPurchase",
            resource=purchase.resource_name,
            detail={"auto_renew": bool(auto_renew)},
        )
    return purchase


def purchases_check(now: datetime | None = None) -> dict:
    """Periodic: notices before expiry, automatic renewals, expiry (deploys refused at once),
    and stopping the group's services once the grace period has passed. Each step claims its
    purchase with a conditional UPDATE, so running twice does nothing twice."""
    from serving.models import Service
    from serving.services import service_stop_by_system

    now = now or timezone.now()
    done = {"notices": 0, "renewed": 0, "expired": 0, "stopped": 0}
    notice = timedelta(seconds=settings.EMS_BILLING_EXPIRY_NOTICE_SECONDS)
    grace = timedelta(seconds=settings.EMS_BILLING_EXPIRY_GRACE_SECONDS)
    open_ = Purchase.objects.filter(renewal__isnull=True).select_related("group")
    for purchase in open_.filter(auto_renew=True, ends_at__lte=now + timedelta(hours=1)):
        with transaction.atomic():
            try:
                _renew(previous=purchase, months=purchase.months, actor=None, now=now, auto=True)
                done["renewed"] += 1
            except ValidationError:
                pass
    for purchase in open_.filter(
        auto_renew=False, notice_sent_at__isnull=True, ends_at__gt=now, ends_at__lte=now + notice
    ):
        with transaction.atomic():
            if Purchase.objects.filter(pk=purchase.pk, notice_sent_at__isnull=True).update(
                notice_sent_at=now
            ):
                message = (
                    f"the purchase of dedicated group {purchase.group.name} ends on "
                    f"{purchase.ends_at:%Y-%m-%d %H:%M} UTC; renew it, or new deploys are refused "
                    "then and its services stop "
                    f"{settings.EMS_BILLING_EXPIRY_GRACE_SECONDS // 3600} h later"
                )
                _event(purchase.tenant_id, "purchase-ending", message, BillingEvent.WARNING)
                _service_events(purchase.group, "billing", message)
                done["notices"] += 1
    for purchase in open_.filter(expired_at__isnull=True, ends_at__lte=now):
        with transaction.atomic():
            if Purchase.objects.filter(
                pk=purchase.pk, expired_at__isnull=True, renewal__isnull=True
            ).update(expired_at=now):
                message = (
                    f"the purchase of dedicated group {purchase.group.name} ended: new deploys "
                    "are refused; running services stop at "
                    f"{purchase.ends_at + grace:%Y-%m-%d %H:%M} UTC unless it is renewed"
                )
                _event(purchase.tenant_id, "purchase-expired", message, BillingEvent.ERROR)
                _service_events(purchase.group, "billing", message)
                done["expired"] += 1
    for purchase in open_.filter(
        expired_at__isnull=False, stopped_services_at__isnull=True, ends_at__lte=now - grace
    ):
        if current_purchase(purchase.group, now):
            continue
        with transaction.atomic():
            if not Purchase.objects.filter(
                pk=purchase.pk, stopped_services_at__isnull=True, renewal__isnull=True
            ).update(stopped_services_at=now):
                continue
            reason = f"the purchase of dedicated group {purchase.group.name} expired"
            for service in Service.objects.live().filter(group=purchase.group, desired=Service.RUN):
                if service_stop_by_system(service=service, reason=reason):
                    done["stopped"] += 1
            _event(purchase.tenant_id, "services-stopped", reason + ": its services were stopped")
    return done


def _service_events(group, kind: str, message: str) -> None:
    from serving import events
    from serving.models import Service

    for service in Service.objects.live().filter(group=group):
        events.emit(service, kind, message, level="warning")


# --- budgets and quota limits ------------------------------------------------------------------
def budget_set(
    *,
    actor,
    monthly_amount,
    thresholds=None,
    stop_at_limit: bool = False,
    email: str = "",
    quota_limits: list[dict] | None = None,
) -> Budget:
    """Set the tenant's monthly budget (alerts at ``thresholds`` percent, an optional stop at
    100%) and, when given, the maximum quota count of each listed sub-account (replacing them)."""
    from accounts.models import Membership

    authz.check(actor, "billing:PutBudget", authz.resource_name(actor.tenant, "budget"))
    amount = _money(monthly_amount, "monthly_amount")
    thresholds = sorted(set(DEFAULT_THRESHOLDS if thresholds is None else thresholds))
    if not thresholds or any(not isinstance(t, int) or not 1 <= t <= 100 for t in thresholds):
        raise ValidationError({"thresholds": "Thresholds are whole percents from 1 to 100."})
    limits = []
    for item in quota_limits or []:
        member = Membership.objects.filter(
            tenant=actor.tenant, pk=item.get("member"), kind=Membership.SUB
        ).first()
        if member is None:
            raise ValidationError({"quota_limits": f"No sub-account {item.get('member')!r}."})
        count = item.get("max_quota_count")
        if not isinstance(count, int) or not 0 <= count <= 100000:
            raise ValidationError({"quota_limits": "max_quota_count is 0 to 100000."})
        limits.append((member, count))
    with transaction.atomic():
        budget, _ = Budget.objects.update_or_create(
            tenant=actor.tenant,
            defaults={
                "monthly_amount": amount,
                "currency": settings.EMS_BILLING_CURRENCY,
                "thresholds": thresholds,
                "stop_at_limit": bool(stop_at_limit),
                "email": email or "",
                "updated_at": timezone.now(),
            },
        )
        if quota_limits is not None:
            QuotaLimit.objects.filter(tenant=actor.tenant).delete()
            QuotaLimit.objects.bulk_create(
                QuotaLimit(tenant=actor.tenant, member=m, max_quota_count=c) for m, c in limits
            )
        record(
            actor=actor,
            action="billing:PutBudget",
            resource=authz.resource_name(actor.tenant, "budget", "monthly"),
            detail={
                "monthly_amount": str(amount),
                "thresholds": thresholds,
                "stop_at_limit": bool(stop_at_limit),
                "quota_limits": {m.name: c for m, c in limits},
            },
        )
    return budget


def budget_check(tenant_id, now: datetime | None = None) -> list[int]:
    """Alerts for thresholds crossed this month (each once: a unique row), an email per alert
    after commit, and the stop at 100% (a system action, audited)."""
    budget = Budget.objects.filter(tenant_id=tenant_id).select_related("tenant").first()
    if budget is None or budget.monthly_amount <= 0:
        return []
    now = now or timezone.now()
    month = bills.month_start(now).date()
    spent = bills.round_cent(bills.month_to_date(tenant_id, now))
    percent = spent * 100 / budget.monthly_amount
    crossed = []
    for threshold in budget.thresholds:
        if percent < threshold:
            continue
        try:
            with transaction.atomic():
                BudgetAlert.objects.create(
                    tenant_id=tenant_id, month=month, threshold=threshold, spent=spent
                )
                message = (
                    f"{threshold}% of the monthly budget reached: {spent} of "
                    f"{budget.monthly_amount} {budget.currency} spent in {month:%Y-%m}"
                )
                _event(
                    tenant_id,
                    "budget-alert",
                    message,
                    BillingEvent.ERROR if threshold >= 100 else BillingEvent.WARNING,
                )
                recipient = budget.email or _owner_email(budget.tenant)
                if recipient:
                    transaction.on_commit(
                        lambda m=message, r=recipient: send_mail(
                            f"EMS budget: {m.split(':')[0]}",
                            m,
                            None,
                            [r],
                            fail_silently=True,
                        )
                    )
                if threshold >= 100 and budget.stop_at_limit:
                    _stop_public_services(budget.tenant, message)
            crossed.append(threshold)
        except IntegrityError:  # alerted already this month
            continue
    return crossed


def _owner_email(tenant) -> str:
    from accounts.models import Membership

    main = Membership.objects.filter(tenant=tenant, kind=Membership.MAIN).select_related("user")
    member = main.first()
    return member.user.email if member else ""


def _stop_public_services(tenant, reason: str) -> int:
    from serving.models import Service
    from serving.services import service_stop_by_system

    stopped = 0
    for service in Service.objects.live().filter(
        tenant=tenant, desired=Service.RUN, group__kind="public"
    ):
        if service_stop_by_system(service=service, reason=f"budget stop: {reason}"):
            stopped += 1
    record(
        actor=None,
        tenant=tenant,
        action="billing:StopAtBudget",
        resource=f"ems:*:{tenant.app_id}:budget/monthly",
        detail={"stopped_services": stopped, "reason": reason},
    )
    _event(tenant.pk, "budget-stop", f"{stopped} service(s) stopped: {reason}", BillingEvent.ERROR)
    return stopped


def budgets_check_all(now: datetime | None = None) -> int:
    total = 0
    for tenant_id in Budget.objects.values_list("tenant_id", flat=True):
        total += len(budget_check(tenant_id, now))
    return total


# --- bills -------------------------------------------------------------------------------------
def bill_adjust(*, operator, bill: Bill, amount, description: str) -> BillLine:
    """A correction to a final bill: a new adjustment line (never an edit)."""
    try:
        value = Decimal(str(amount)).quantize(CENT)
    except (InvalidOperation, ValueError):
        raise ValidationError({"amount": f"{amount!r} is not an amount."}) from None
    if not description.strip():
        raise ValidationError({"description": "Say what the adjustment corrects."})
    with transaction.atomic():
        line = BillLine.objects.create(
            bill=bill,
            kind=BillLine.ADJUSTMENT,
            description=description.strip()[:300],
            amount=value,
            created_by=getattr(operator, "username", "system"),
        )
        record(
            actor=None,
            tenant=bill.tenant,
            action="billing:AdjustBill",
            resource=bill.resource_name,
            detail={"amount": str(value), "operator": line.created_by},
        )
    return line
