from django.apps import AppConfig


def _is_staff(request) -> bool:
    return request.user.is_authenticated and request.user.is_staff


class PortalConfig(AppConfig):
    """Site-wide pages, health check, bootstrap runner and navigation."""

    name = "portal"
    verbose_name = "Portal"
    nav_items = (
        ("API", "swagger-ui", None),
        ("Operator admin", "admin:index", _is_staff),
    )
