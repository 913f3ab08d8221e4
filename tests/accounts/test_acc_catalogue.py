"""The one catalogue: gathered from every app's ``<app>/actions.py``, declared nowhere else."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from accounts import catalogue

ROOT = Path(__file__).resolve().parents[2]


def test_every_apps_actions_module_is_gathered_under_its_label():
    declaring = {}
    for config in apps.get_app_configs():
        if (Path(config.path) / "actions.py").is_file():
            module = importlib.import_module(f"{config.name}.actions")
            if hasattr(module, "ACTIONS"):  # django.contrib.admin.actions is something else
                declaring[config.label] = module
    assert {"accounts", "billing", "models_repo", "serving"} <= set(declaring)
    for label, module in declaring.items():
        for action in module.ACTIONS:
            found = catalogue.get_action(action.name)
            assert found is not None and found.app == label, action.name
            assert (found.description, found.kind, found.access, found.service_role) == (
                action.description,
                action.kind,
                action.access,
                action.service_role,
            )
    assert len(catalogue.all_actions()) >= 68


def test_every_action_names_a_declared_resource_type():
    kinds = {t.kind for t in catalogue.resource_types()}
    assert {a.kind for a in catalogue.all_actions()} <= kinds | {"*"}


def test_no_app_config_writes_the_catalogue():
    for config in apps.get_app_configs():
        source = Path(config.path) / "apps.py"
        if source.is_file() and str(source).startswith(str(ROOT)):
            text = source.read_text()
            assert "register_actions" not in text and "Action(" not in text, source


def test_the_same_definition_from_another_app_is_a_no_op_a_different_one_an_error():
    mine = catalogue.get_action("ems:DescribeJobs")
    catalogue.register_actions("jobs", [catalogue.Action(**{**mine.__dict__, "app": "jobs"})])
    assert catalogue.get_action("ems:DescribeJobs").app == mine.app
    with pytest.raises(ImproperlyConfigured, match="differently"):
        catalogue.register_actions("jobs", [catalogue.Action("ems:DescribeJobs", "Other", "job")])
