"""What the other apps do when a tenant is suspended, reinstated or deleted.

Each app may have a ``<app>/tenancy.py`` with any of ``on_suspend(*, tenant, actor)``,
``on_reinstate(*, tenant, actor)`` (called inside the accounts service's transaction) and
``delete_blockers(tenant) -> list[str]`` (why the tenant cannot be deleted now). accounts gathers
them here, the way it gathers the action catalogue, so accounts never imports another app.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from django.apps import apps


def modules() -> list[ModuleType]:
    out = []
    for config in apps.get_app_configs():
        name = f"{config.name}.tenancy"
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return out


def call(hook: str, **kwargs) -> None:
    for module in modules():
        fn = getattr(module, hook, None)
        if fn is not None:
            fn(**kwargs)


def delete_blockers(tenant) -> list[str]:
    reasons: list[str] = []
    for module in modules():
        fn = getattr(module, "delete_blockers", None)
        if fn is not None:
            reasons += fn(tenant)
    return reasons
