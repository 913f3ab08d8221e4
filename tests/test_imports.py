"""Every project module imports alone, in a fresh interpreter; the data plane never imports Django.

A module that only imports because another module happened to be imported first (a cycle
papered over by import order, or by an import moved into a function) fails here: each module is
imported by itself in a new Python process — after ``django.setup()`` for the control plane, and
with no Django settings at all for ``gateway`` and ``runtimes``, which must also leave no
``django`` module in ``sys.modules`` (they run on the request path without the ORM).
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTROL_PLANE = ["accounts", "billing", "models_repo", "portal", "serving"]
DATA_PLANE = ["gateway", "runtimes"]

CHILD = """
import importlib, sys
name, with_django = sys.argv[1], sys.argv[2] == "1"
if with_django:
    import django
    django.setup()
importlib.import_module(name)
if not with_django:
    loaded = sorted(m for m in sys.modules if m == "django" or m.startswith("django."))
    if loaded:
        print(f"{name} imports Django: {loaded[:5]}")
        sys.exit(3)
"""


def modules(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        if "migrations" in rel.parts or "__pycache__" in rel.parts:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(".".join(parts))
    return found


def import_alone(name: str, with_django: bool) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(ROOT)
    if not with_django:
        env.pop("DJANGO_SETTINGS_MODULE", None)
    else:
        env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, name, "1" if with_django else "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode == 0:
        return None
    tail = (result.stdout + result.stderr).strip().splitlines()[-6:]
    return f"{name}: " + " | ".join(tail)


def test_the_module_lists_are_not_empty():
    assert "accounts.door" in modules("accounts")
    assert "gateway.routes" in modules("gateway")
    assert "runtimes.server" in modules("runtimes")


@pytest.mark.timeout(1200)
def test_every_module_imports_alone_in_a_fresh_interpreter():
    jobs = [(m, True) for p in CONTROL_PLANE for m in modules(p)]
    jobs += [(m, False) for p in DATA_PLANE for m in modules(p)]
    workers = max(1, min(4, (os.cpu_count() or 2)))
    with ThreadPoolExecutor(workers) as pool:
        failures = [f for f in pool.map(lambda job: import_alone(*job), jobs) if f]
    assert failures == [], "\n".join(failures)
    assert len(jobs) > 100  # the walk found the project


def test_data_plane_packages_do_not_import_django():
    """Cheap static check next to the import walk: no ``django`` import statement at all."""
    offenders = []
    for package in DATA_PLANE:
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                words = line.strip().split()
                if (
                    len(words) >= 2
                    and words[0] in ("import", "from")
                    and (words[1] == "django" or words[1].startswith("django."))
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
