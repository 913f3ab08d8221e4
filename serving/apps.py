from django.apps import AppConfig


class ServingConfig(AppConfig):
    """Resource groups, online services, instances, tokens, the reconciler and the gateway."""

    name = "serving"
    verbose_name = "Serving"
    nav_items = ()
