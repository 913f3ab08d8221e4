from django.apps import AppConfig


def _member(request) -> bool:
    return getattr(request, "actor", None) is not None


class ModelsRepoConfig(AppConfig):
    """Regions, runtime environments, model configs and versions, object storage."""

    name = "models_repo"
    verbose_name = "Model repository"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (("Model configs", "models_repo:config-list", _member),)
