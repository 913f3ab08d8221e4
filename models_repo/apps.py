from django.apps import AppConfig


class ModelsRepoConfig(AppConfig):
    """Regions, runtime environments, model configs and versions, object storage."""

    name = "models_repo"
    verbose_name = "Model repository"
    nav_items = ()
