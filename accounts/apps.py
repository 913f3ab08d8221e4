from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Tenants, memberships, policies, service-role authorization, API keys, audit log."""

    name = "accounts"
    verbose_name = "Accounts"
    nav_items = ()
