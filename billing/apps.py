from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Price lists, metering, usage records, bills and exports."""

    name = "billing"
    verbose_name = "Billing"
    nav_items = ()
