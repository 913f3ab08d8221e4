from django.apps import AppConfig


def _member(request) -> bool:
    return getattr(request, "actor", None) is not None


class ServingConfig(AppConfig):
    """Resource groups, online services, instances, tokens, the reconciler and the gateway."""

    name = "serving"
    verbose_name = "Serving"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (
        ("Services", "serving:service-list", _member),
        ("Batch jobs", "jobs:job-list", _member),
    )

    def ready(self):
        try:
            from models_repo.services import register_in_use_check
        except ImportError:  # pragma: no cover - models_repo without the seam
            return
        from serving.checks import version_in_use

        register_in_use_check(version_in_use)
