from django.apps import AppConfig


def _reads_bills(request) -> bool:
    actor = getattr(request, "actor", None)
    if actor is None:
        return False
    from accounts import authz

    return authz.is_allowed(
        actor, "billing:DescribeBills", authz.resource_name(actor.tenant, "bill", "*")
    )


class BillingConfig(AppConfig):
    """Price lists, metering, usage records, bills, purchases, budgets and exports."""

    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (("Billing", "billing:overview", _reads_bills),)
