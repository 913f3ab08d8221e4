"""The one catalogue of actions and resource types, gathered from every app.

Each app declares what it adds in a module of its own, ``<app>/actions.py``:

    ACTIONS = [Action("ems:DescribeServices", "List services", "service", "read", True), ...]
    RESOURCE_TYPES = [ResourceType("service", "An online inference service"), ...]

:func:`discover` (run from ``AccountsConfig.ready()``, and on first use) imports that module of
every installed app that has one and registers what it declares under the app's label. An
action is named once and never renamed (policy documents name them): registering a name again
with another definition is an error. :func:`register_actions` stays for code that adds actions
from elsewhere (tests, an app's ``ready()``).

Namespaces: ``ems:`` (model configs, services, jobs, regions, runtimes, resource groups, API
keys), ``storage:`` (buckets and objects), ``billing:`` (usage, bills, budgets) and ``accounts:``
(sub-accounts, collaborators, policies, the service role, audit log). ``access`` is ``read`` or
``write``; ``kind`` is the ``<kind>`` of the resource names the action applies to (a declared
resource type); ``service_role`` marks actions refused until the tenant has authorized
``EMS_ServiceRole``. ``docs/accounts.md`` lists the catalogue.

This module imports no model and no other app: ``accounts.authz`` and ``accounts.policy`` read it
while the models are being loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from django.apps import apps
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


@dataclass(frozen=True)
class ResourceType:
    """A ``<kind>`` of ``ems:<region>:<app_id>:<kind>/<ident>``."""

    kind: str
    description: str
    app: str = "accounts"


_CATALOGUE: dict[str, Action] = {}
_RESOURCE_TYPES: dict[str, ResourceType] = {}
_DISCOVERED = False


def register_actions(app: str, actions) -> None:
    """Add actions (``Action`` objects or dicts of its fields). Never renames: registering a
    name again with a different definition is an error; the same definition (from any app) is a
    no-op and the first app to declare it keeps it."""
    for item in actions:
        action = item if isinstance(item, Action) else Action(**item)
        if action.app != app:
            action = Action(**{**action.__dict__, "app": app})
        existing = _CATALOGUE.get(action.name)
        if existing is None:
            _CATALOGUE[action.name] = action
        elif _definition(existing) != _definition(action):
            raise ImproperlyConfigured(
                f"action {action.name} is already registered by {existing.app} differently"
            )


def _definition(action: Action) -> tuple:
    return (action.name, action.description, action.kind, action.access, action.service_role)


def register_resource_types(app: str, types) -> None:
    for item in types:
        rtype = ResourceType(item.kind, item.description, app)
        existing = _RESOURCE_TYPES.get(rtype.kind)
        if existing is not None and existing != rtype:
            raise ImproperlyConfigured(
                f"resource type {rtype.kind} is already declared by {existing.app} differently"
            )
        _RESOURCE_TYPES[rtype.kind] = rtype


def discover() -> None:
    """Register ``ACTIONS`` and ``RESOURCE_TYPES`` of every installed app's ``actions`` module."""
    global _DISCOVERED
    for config in apps.get_app_configs():
        name = f"{config.name}.actions"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        register_resource_types(config.label, getattr(module, "RESOURCE_TYPES", ()))
        register_actions(config.label, getattr(module, "ACTIONS", ()))
    _DISCOVERED = True


def _ensure() -> None:
    if not _DISCOVERED and apps.ready:
        discover()


def get_action(name: str) -> Action | None:
    _ensure()
    return _CATALOGUE.get(name)


def all_actions() -> list[Action]:
    _ensure()
    return sorted(_CATALOGUE.values(), key=lambda a: a.name)


def resource_types() -> list[ResourceType]:
    _ensure()
    return sorted(_RESOURCE_TYPES.values(), key=lambda t: t.kind)


def namespaces() -> set[str]:
    return {a.name.split(":", 1)[0] for a in all_actions()}
