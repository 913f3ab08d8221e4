from django.apps import AppConfig


def _member(request) -> bool:
    return getattr(request, "actor", None) is not None


def _main(request) -> bool:
    actor = getattr(request, "actor", None)
    return actor is not None and actor.kind == "main"


def _anonymous(request) -> bool:
    return not request.user.is_authenticated


class AccountsConfig(AppConfig):
    """Tenants, memberships, policies, service-role authorization, API keys, audit log."""

    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (
        ("Dashboard", "accounts:dashboard", _member),
        ("Sub-accounts", "accounts:sub-accounts", _member),
        ("Policies", "accounts:policies", _member),
        ("Simulator", "accounts:simulator", _member),
        ("Audit log", "accounts:audit", _member),
        ("Account admin", "tenant_admin:index", _main),
        ("Sign up", "accounts:signup", _anonymous),
        ("Log in", "accounts:login", _anonymous),
    )

    def ready(self):
        from accounts import catalogue

        catalogue.discover()  # every installed app's <app>/actions.py
