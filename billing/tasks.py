"""Billing's periodic tasks (beat, added by the bootstrap step): thin, safe to run twice."""

from celery import shared_task


@shared_task(name="billing.meter", ignore_result=True)
def meter() -> dict:
    """Close the windows that are due, repair late facts, then check budgets."""
    from billing import metering, services

    done = metering.run()
    services.budgets_check_all()
    return {k: str(v) for k, v in done.items()}


@shared_task(name="billing.housekeeping", ignore_result=True)
def housekeeping() -> dict:
    """Purchases (notices, renewals, expiry, stops) and finalizing last month's bills."""
    from billing import bills, services

    done = services.purchases_check()
    done["bills"] = bills.close_months()
    return done
