from django.apps import AppConfig


def _member(request) -> bool:
    return getattr(request, "actor", None) is not None


class ServingConfig(AppConfig):
    """Resource groups, online services, instances, tokens, the reconciler and the gateway."""

    name = "serving"
    verbose_name = "Serving"
    default_auto_field = "django.db.models.BigAutoField"
    nav_items = (("Services", "serving:service-list", _member),)

    def ready(self):
        from accounts.catalogue import Action, get_action, register_actions

        # The service actions live in the accounts catalogue; add any it does not (yet) have.
        wanted = [
            Action("ems:DescribeServices", "List services", "service", "read", True),
            Action("ems:DescribeService", "See one service", "service", "read", True),
            Action("ems:CreateService", "Deploy a service", "service", "write", True),
            Action("ems:DeleteService", "Delete a service", "service", "write", True),
            Action("ems:StopService", "Stop a service", "service", "write", True),
            Action("ems:ResumeService", "Resume a service", "service", "write", True),
            Action("ems:ScaleService", "Scale a service", "service", "write", True),
            Action(
                "ems:UpdateService",
                "Roll a service to a new config version",
                "service",
                "write",
                True,
            ),
            Action("ems:RollbackService", "Roll a service back", "service", "write", True),
            Action("ems:DescribeServiceEvents", "Read a service's events", "service", "read", True),
            Action(
                "ems:DescribeServiceInstances",
                "List a service's instances",
                "service",
                "read",
                True,
            ),
            Action("ems:DescribeServiceLogs", "Read a service's logs", "service", "read", True),
            Action("ems:DescribeResourceGroups", "List resource groups", "resource-group"),
            Action(
                "ems:DescribeServiceToken",
                "See a service's address and token",
                "service",
                "read",
                True,
            ),
            Action("ems:RotateServiceToken", "Rotate a service's token", "service", "write", True),
            Action(
                "ems:RevokeServiceToken",
                "Revoke a service's tokens (a new one is issued)",
                "service",
                "write",
                True,
            ),
        ]
        register_actions("serving", [a for a in wanted if get_action(a.name) is None])

        from serving import hooks, publish

        hooks.register_instances_listener(publish.publish_service)
        hooks.register_quiet_pass_listener(publish.publish_service)
        hooks.register_drain_listener(publish.drain)
        try:
            from models_repo.services import register_in_use_check
        except ImportError:  # pragma: no cover - models_repo without the seam
            return
        from serving.checks import version_in_use

        register_in_use_check(version_in_use)
