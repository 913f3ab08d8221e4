"""Runs each app's idempotent bootstrap step, in ``INSTALLED_APPS`` order.

An app takes part by having a ``bootstrap`` module with ``run(*, demo: bool, log)``; ``log`` is a
callable that prints one line. Every step must be safe to run any number of times.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from django.apps import apps
from django.db import transaction


def steps() -> list[tuple[str, Callable[..., None]]]:
    found = []
    for config in apps.get_app_configs():
        module_name = f"{config.name}.bootstrap"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        found.append((config.label, module.run))
    return found


def run_all(*, demo: bool, log: Callable[[str], None]) -> list[str]:
    ran = []
    for label, step in steps():
        with transaction.atomic():
            step(demo=demo, log=lambda line, label=label: log(f"[{label}] {line}"))
        ran.append(label)
    return ran
