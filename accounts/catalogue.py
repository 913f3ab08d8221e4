"""The catalogue of actions: every operation of the API table, named once, never renamed.

Namespaces: ``ems:`` (model configs, services, jobs, regions, runtimes, resource groups, API
keys), ``storage:`` (buckets and objects), ``billing:`` (usage, bills, budgets) and ``accounts:``
(sub-accounts, collaborators, policies, the service role, audit log). ``access`` is ``read`` or
``write``; ``kind`` is the ``<kind>`` of the resource names the action applies to;
``service_role`` marks actions refused until the tenant has authorized ``EMS_ServiceRole``.

Other apps add actions from ``AppConfig.ready()`` with :func:`register_actions`; policy
documents are validated against this catalogue. ``docs/accounts.md`` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    kind: str = "*"
    access: str = "read"
    service_role: bool = False
    app: str = "accounts"

    def __post_init__(self):
        namespace, _, verb = self.name.partition(":")
        if not namespace or not verb or not verb[0].isupper() or "*" in self.name:
            raise ImproperlyConfigured(f"action name {self.name!r} is not 'namespace:Verb…'")
        if self.access not in {"read", "write"}:
            raise ImproperlyConfigured(f"action {self.name}: access must be read or write")


_CATALOGUE: dict[str, Action] = {}


def register_actions(app: str, actions) -> None:
    """Add actions (``Action`` objects or dicts of its fields). Never renames: registering a
    name again with a different definition is an error; the same definition is a no-op."""
    for item in actions:
        action = item if isinstance(item, Action) else Action(**item)
        if action.app != app:
            action = Action(**{**action.__dict__, "app": app})
        existing = _CATALOGUE.get(action.name)
        if existing is not None and existing != action:
            raise ImproperlyConfigured(
                f"action {action.name} is already registered by {existing.app} differently"
            )
        _CATALOGUE[action.name] = action


def get_action(name: str) -> Action | None:
    return _CATALOGUE.get(name)


def all_actions() -> list[Action]:
    return sorted(_CATALOGUE.values(), key=lambda a: a.name)


def namespaces() -> set[str]:
    return {name.split(":", 1)[0] for name in _CATALOGUE}


def _a(name, description, kind, access="read", service_role=False):
    return Action(name, description, kind, access, service_role)


_R, _W = "read", "write"

BUILTIN = [
    # accounts: API keys of the acting member (the member's own keys only)
    _a("ems:ListApiKeys", "List your API keys", "api-key"),
    _a("ems:CreateApiKey", "Create an API key (shown once)", "api-key", _W),
    _a("ems:DeleteApiKey", "Revoke one of your API keys", "api-key", _W),
    # accounts: service role and storage credentials
    _a("accounts:DescribeServiceRole", "See whether EMS_ServiceRole is authorized", "role"),
    _a("accounts:AuthorizeServiceRole", "Authorize EMS_ServiceRole for the tenant", "role", _W),
    _a("accounts:RevokeServiceRole", "Revoke EMS_ServiceRole (blocks new deploys)", "role", _W),
    _a(
        "accounts:PutStorageCredential",
        "Store the tenant's own storage credentials",
        "storage-credential",
        _W,
    ),
    _a(
        "accounts:DeleteStorageCredential",
        "Forget the tenant's storage credentials",
        "storage-credential",
        _W,
    ),
    # accounts: members
    _a("accounts:ListSubAccounts", "List sub-accounts", "member"),
    _a("accounts:DescribeSubAccount", "See one sub-account", "member"),
    _a("accounts:CreateSubAccount", "Create a sub-account", "member", _W),
    _a("accounts:UpdateSubAccount", "Change a sub-account (password, active)", "member", _W),
    _a("accounts:DeleteSubAccount", "Delete a sub-account", "member", _W),
    _a("accounts:ListCollaborators", "List collaborators and invitations", "member"),
    _a("accounts:InviteCollaborator", "Invite a collaborator by email", "member", _W),
    _a("accounts:DeleteCollaborator", "Remove a collaborator or invitation", "member", _W),
    # accounts: policies
    _a("accounts:ListPolicies", "List custom and preset policies", "policy"),
    _a("accounts:DescribePolicy", "See a policy document", "policy"),
    _a("accounts:CreatePolicy", "Create a custom policy", "policy", _W),
    _a("accounts:UpdatePolicy", "Change a custom policy", "policy", _W),
    _a("accounts:DeletePolicy", "Delete a custom policy", "policy", _W),
    _a("accounts:ListAttachedPolicies", "List the policies attached to a member", "member"),
    _a("accounts:AttachPolicy", "Attach a policy to a member", "member", _W),
    _a("accounts:DetachPolicy", "Detach a policy from a member", "member", _W),
    _a("accounts:SimulatePolicy", "Ask the policy simulator", "member"),
    _a("accounts:ListAuditEvents", "Read the audit log", "audit"),
    # ems: platform catalogues
    _a("ems:DescribeRegions", "List regions", "region"),
    _a("ems:DescribeRuntimes", "List runtime environments", "runtime"),
    _a("ems:CreateRuntime", "Create a custom runtime", "runtime", _W, True),
    _a("ems:DeleteRuntime", "Delete a custom runtime", "runtime", _W, True),
    _a("ems:DescribeResourceGroups", "List resource groups", "resource-group"),
    # ems: model configs and versions
    _a("ems:DescribeModelConfigs", "List model service configs", "config", _R, True),
    _a("ems:DescribeModelConfig", "See one model service config", "config", _R, True),
    _a("ems:CreateModelConfig", "Create a model service config", "config", _W, True),
    _a("ems:DeleteModelConfig", "Delete a model service config", "config", _W, True),
    _a("ems:DescribeModelConfigVersions", "List a config's versions", "config", _R, True),
    _a("ems:CreateModelConfigVersion", "Add a version to a config", "config", _W, True),
    # ems: services
    _a("ems:DescribeServices", "List services", "service", _R, True),
    _a("ems:DescribeService", "See one service", "service", _R, True),
    _a("ems:CreateService", "Deploy a service", "service", _W, True),
    _a("ems:DeleteService", "Delete a service", "service", _W, True),
    _a("ems:StopService", "Stop a service", "service", _W, True),
    _a("ems:ResumeService", "Resume a service", "service", _W, True),
    _a("ems:ScaleService", "Scale a service", "service", _W, True),
    _a("ems:UpdateService", "Roll a service to a new config version", "service", _W, True),
    _a("ems:RollbackService", "Roll a service back", "service", _W, True),
    _a("ems:DescribeServiceToken", "See a service's address and token", "service", _R, True),
    _a("ems:RotateServiceToken", "Rotate a service's token", "service", _W, True),
    _a("ems:DescribeServiceEvents", "Read a service's events", "service", _R, True),
    _a("ems:DescribeServiceInstances", "List a service's instances", "service", _R, True),
    _a("ems:DescribeServiceMetrics", "Read a service's metrics", "service", _R, True),
    _a("ems:DescribeServiceLogs", "Read a service's logs", "service", _R, True),
    # ems: batch jobs
    _a("ems:DescribeJobs", "List batch jobs", "job", _R, True),
    _a("ems:DescribeJob", "See one batch job", "job", _R, True),
    _a("ems:CreateJob", "Start a batch job", "job", _W, True),
    _a("ems:CancelJob", "Cancel a batch job", "job", _W, True),
    # storage: buckets and objects (through the service role or the tenant's credentials)
    _a("storage:ListBuckets", "List the tenant's buckets", "bucket", _R, True),
    _a("storage:ListObjects", "Browse a bucket's objects", "bucket", _R, True),
    _a("storage:GetObject", "Read an object", "bucket", _R, True),
    _a("storage:PutObject", "Upload objects into a bucket", "bucket", _W, True),
    # billing
    _a("billing:DescribeUsage", "Read usage records", "usage"),
    _a("billing:DescribeBills", "Read monthly bills", "bill"),
    _a("billing:ExportBill", "Export a bill (CSV, spreadsheet)", "bill"),
    _a("billing:DescribeBudgets", "Read budgets", "budget"),
    _a("billing:PutBudget", "Set a budget", "budget", _W),
]

register_actions("accounts", BUILTIN)
