"""The billing bootstrap step: a default price list (per active region and quota type, from
2000-01-01, unless that pair has a price already) and the beat schedule of the meter and the
housekeeping task. Idempotent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings

DEFAULT_PRICES = {"cpu": Decimal("0.120000"), "gpu": Decimal("6.000000")}  # per unit-hour
DEFAULT_FROM = datetime(2000, 1, 1, tzinfo=UTC)
HOUSEKEEPING_EVERY_SECONDS = 300


def run(*, demo: bool, log) -> None:
    from billing.models import Price
    from models_repo.models import Region

    for region in Region.objects.filter(is_active=True):
        for quota_type, price in DEFAULT_PRICES.items():
            if Price.objects.filter(region=region, quota_type=quota_type).exists():
                continue
            Price.objects.create(
                region=region,
                quota_type=quota_type,
                unit_price_per_hour=price,
                currency=settings.EMS_BILLING_CURRENCY,
                effective_from=DEFAULT_FROM,
                created_by="bootstrap",
            )
            log(f"price {region.name} {quota_type}: {price} {settings.EMS_BILLING_CURRENCY}/h")
    _beat(log)


def _beat(log) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, task, every in (
        ("billing: meter", "billing.meter", settings.EMS_METERING_WINDOW_SECONDS),
        ("billing: housekeeping", "billing.housekeeping", HOUSEKEEPING_EVERY_SECONDS),
    ):
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=every, period=IntervalSchedule.SECONDS
        )
        _, created = PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )
        if created:
            log(f"scheduled {task} every {every} s")
