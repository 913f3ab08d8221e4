from django.apps import AppConfig


def _member(request) -> bool:
    return getattr(request, "actor", None) is not None


class ModelsRepoConfig(AppConfig):
    """Regions, runtime environments, model configs and versions, object storage."""

    name = "models_repo"
    verbose_name = "Model repository"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (("Model configs", "models_repo:config-list", _member),)

    def ready(self):
        from accounts.catalogue import Action, register_actions

        register_actions(
            "models_repo",
            [
                Action(
                    "ems:DeleteModelConfigVersion",
                    "Delete a config version no service or job uses",
                    kind="config",
                    access="write",
                    service_role=True,
                ),
                Action(
                    "storage:CreateBucket",
                    "Create a bucket (named <name>-<app_id>)",
                    kind="bucket",
                    access="write",
                    service_role=True,
                ),
            ],
        )
