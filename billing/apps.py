from django.apps import AppConfig


def _member(request) -> bool:
    return getattr(request, "actor", None) is not None


class BillingConfig(AppConfig):
    """Price lists, metering, usage records, bills, purchases, budgets and exports."""

    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (("Billing", "billing:overview", _member),)
