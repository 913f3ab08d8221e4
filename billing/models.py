"""Data of the billing app: prices, the meter's watermark, usage rows, purchases of dedicated
groups, monthly bills with their lines, budgets, alerts, sub-account quota limits, exports.

Money is ``Decimal`` everywhere. Usage rows keep the exact ``price_seconds`` (unit price × quota
count × billed seconds, no rounding); amounts are rounded to the cent only once, at the bill
level (``docs/billing.md``).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.scoping import TenantOwnedModel

QUOTA_TYPE_CHOICES = [("cpu", "CPU quota"), ("gpu", "GPU quota")]
CENT = Decimal("0.01")


class Price(models.Model):
    """A unit price per hour of one quota unit, per region and quota type, from a moment on.

    Rows are never edited: a change is a new row with a later ``effective_from`` (operators add it
    in the admin, through ``billing.services.price_set``, audited). The price in effect at ``t`` is
    the row with the latest ``effective_from <= t``."""

    region = models.ForeignKey("models_repo.Region", on_delete=models.PROTECT, related_name="+")
    quota_type = models.CharField(max_length=8, choices=QUOTA_TYPE_CHOICES)
    unit_price_per_hour = models.DecimalField(max_digits=14, decimal_places=6)
    currency = models.CharField(max_length=3)
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["region_id", "quota_type", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["region", "quota_type", "effective_from"], name="price_once_per_moment"
            ),
            models.CheckConstraint(
                condition=Q(unit_price_per_hour__gte=0), name="price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.region_id and self.region.name} {self.quota_type} "
            f"{self.unit_price_per_hour} {self.currency}/h "
            f"from {self.effective_from:%Y-%m-%d %H:%M}"
        )


class MeterState(models.Model):
    """The meter's watermark: every window ending at or before ``watermark`` is closed. Moved
    only with a conditional UPDATE in the same transaction that writes the window's rows."""

    name = models.CharField(max_length=20, unique=True)
    watermark = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} @ {self.watermark:%Y-%m-%d %H:%M:%S}"


class UsageRecord(TenantOwnedModel):
    """One instance's billable time inside one meter window (one row per (instance, window)).

    ``seconds`` is the overlap of the instance's billed span (``started_at`` → ``stopped_at``)
    with the window; ``price_seconds`` = Σ over price segments of unit price × quota count ×
    seconds (exact); ``amount`` = price_seconds / 3600 to 10 places (display; bills sum
    ``price_seconds``). ``unit_price_per_hour`` is the price at the start of the billed part of
    the window; ``segments`` lists each price's part when a price changed inside the window."""

    instance = models.ForeignKey("serving.Instance", on_delete=models.PROTECT, related_name="+")
    service = models.ForeignKey("serving.Service", on_delete=models.PROTECT, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    seconds = models.PositiveIntegerField()
    quota_type = models.CharField(max_length=8)
    quota_count = models.PositiveSmallIntegerField()
    unit_price_per_hour = models.DecimalField(max_digits=14, decimal_places=6)
    price_seconds = models.DecimalField(max_digits=24, decimal_places=6)
    amount = models.DecimalField(max_digits=20, decimal_places=10)
    currency = models.CharField(max_length=3)
    segments = models.JSONField(default=list, blank=True)
    billed_until = models.DateTimeField(help_text="End of the billed part of the window.")
    recorded_at = models.DateTimeField(default=timezone.now)

    resource_kind = "usage"

    class Meta:
        ordering = ["window_start", "instance_id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "window_start"], name="usage_once"),
        ]
        indexes = [
            models.Index(fields=["tenant", "window_start"]),
            models.Index(fields=["service", "window_start"]),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.window_start:%Y-%m-%d %H:%M} {self.seconds}s"


class UsageDaily(TenantOwnedModel):
    """Per service and UTC day: the sums of its usage rows (kept in step by the meter in the
    same transaction that writes or corrects the rows), so pages never scan minute rows."""

    service = models.ForeignKey("serving.Service", on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    seconds = models.BigIntegerField(default=0)
    amount = models.DecimalField(max_digits=24, decimal_places=10, default=0)

    resource_kind = "usage"

    class Meta:
        ordering = ["day", "service_id"]
        constraints = [models.UniqueConstraint(fields=["service", "day"], name="usage_daily_once")]
        indexes = [models.Index(fields=["tenant", "day"])]


class Purchase(TenantOwnedModel):
    """A prepaid period of a dedicated resource group: its spec, months, price, start and end.

    Services on a dedicated group accrue no usage; the purchase is the bill line (in the month
    it starts). Renewal adds the next period as a new row (``renewal_of``). Expiry without a
    renewal: new deploys on the group are refused at once, running services are stopped after
    ``EMS_BILLING_EXPIRY_GRACE_SECONDS``."""

    group = models.ForeignKey(
        "serving.ResourceGroup", on_delete=models.PROTECT, related_name="purchases"
    )
    nodes = models.PositiveSmallIntegerField(default=1)
    cores_per_node = models.PositiveIntegerField()
    memory_gib_per_node = models.PositiveIntegerField()
    gpus_per_node = models.PositiveSmallIntegerField(default=0)
    months = models.PositiveSmallIntegerField()
    price = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    auto_renew = models.BooleanField(default=False)
    renewal_of = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="renewal"
    )
    notice_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    expired_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_services_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    resource_kind = "purchase"

    class Meta:
        ordering = ["group_id", "-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="purchase_period"
            ),
            models.CheckConstraint(condition=Q(price__gte=0), name="purchase_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.group} {self.starts_at:%Y-%m-%d} → {self.ends_at:%Y-%m-%d}"

    @property
    def spec(self) -> str:
        text = f"{self.nodes} × {self.cores_per_node} cores / {self.memory_gib_per_node} GiB"
        return text + (f" / {self.gpus_per_node} GPU" if self.gpus_per_node else "")


class Bill(TenantOwnedModel):
    """A tenant's final statement of one month, written once after the month closes (its lines
    are copied from usage and purchases then). Later corrections are adjustment lines."""

    month = models.DateField(help_text="First day of the month.")
    currency = models.CharField(max_length=3)
    finalized_at = models.DateTimeField(default=timezone.now)

    resource_kind = "bill"

    class Meta:
        ordering = ["tenant_id", "-month"]
        constraints = [models.UniqueConstraint(fields=["tenant", "month"], name="bill_once")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.month:%Y-%m}"

    @property
    def resource_ident(self) -> str:
        return f"{self.month:%Y-%m}"


class BillLine(models.Model):
    """One line of a final bill: a service's usage, a purchase, or an adjustment."""

    USAGE, PURCHASE, ADJUSTMENT = "usage", "purchase", "adjustment"
    KINDS = [(USAGE, "usage"), (PURCHASE, "purchase"), (ADJUSTMENT, "adjustment")]

    bill = models.ForeignKey(Bill, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=10, choices=KINDS)
    service = models.ForeignKey(
        "serving.Service", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    purchase = models.ForeignKey(
        Purchase, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    description = models.CharField(max_length=300)
    seconds = models.PositiveBigIntegerField(default=0)
    amount = models.DecimalField(max_digits=20, decimal_places=10)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["bill_id", "kind", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.description} {self.amount}"


class Budget(TenantOwnedModel):
    """A tenant's monthly budget: alert thresholds (percent) and an optional stop at 100%."""

    monthly_amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    thresholds = models.JSONField(default=list)
    stop_at_limit = models.BooleanField(default=False)
    email = models.EmailField(blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    resource_kind = "budget"

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="budget_once")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.monthly_amount} {self.currency}"


class BudgetAlert(TenantOwnedModel):
    """A threshold crossed in a month: written once (unique), which makes the alert and its
    email exactly-once."""

    month = models.DateField()
    threshold = models.PositiveSmallIntegerField()
    spent = models.DecimalField(max_digits=20, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    resource_kind = "budget"

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month", "threshold"], name="alert_once")
        ]


class QuotaLimit(TenantOwnedModel):
    """The most quota units a sub-account may hold at once (instances of the public-group
    services it created × their quota count)."""

    member = models.OneToOneField(
        "accounts.Membership", on_delete=models.CASCADE, related_name="quota_limit"
    )
    max_quota_count = models.PositiveIntegerField()

    resource_kind = "budget"


class BillingEvent(TenantOwnedModel):
    """Billing's timeline for a tenant: budget alerts, purchase notices, expiry, stops."""

    INFO, WARNING, ERROR = "info", "warning", "error"
    LEVELS = [(INFO, "info"), (WARNING, "warning"), (ERROR, "error")]

    kind = models.CharField(max_length=30)
    level = models.CharField(max_length=8, choices=LEVELS, default=INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    resource_kind = "bill"

    class Meta:
        ordering = ["-created_at", "-id"]


def currency() -> str:
    return settings.EMS_BILLING_CURRENCY
