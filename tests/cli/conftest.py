"""What the CLI tests share: a live portal (the Procfile's processes on the embedded default,
one per test module) and ``ems``, the installed command run against it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.livestack import live_stack

ROOT = Path(__file__).resolve().parents[2]
EMS = Path(sys.executable).parent / "ems"


@pytest.fixture(scope="module")
def stack():
    if not EMS.exists():
        service_missing(f"{EMS} is not installed: run `make deps` (it installs the CLI)")
    live = live_stack()
    try:
        live.start()
        yield live
    finally:
        live.stop()
        shutil.rmtree(live.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ems(stack, tmp_path_factory):
    """``ems(*args, code=0, stdin=None, timeout=400)``: the completed process; any other exit
    code fails the test with the command's output and the worker's log."""
    home = tmp_path_factory.mktemp("ems-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
    # this checkout's cli package, whichever checkout the venv's `ems` was installed from
    env |= {
        "EMS_CONFIG": str(home / "ems" / "config.json"),
        "COLUMNS": "200",
        "PYTHONPATH": str(ROOT),
    }

    def run(
        *args: str, code: int = 0, stdin: str | None = None, timeout: float = 400
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(EMS), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == code, (
            f"ems {' '.join(args)} exited {result.returncode}, wanted {code}\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}\n"
            f"worker log: {stack.logs('worker')[-1500:]}"
        )
        return result

    run.config = Path(env["EMS_CONFIG"])
    return run


def angel_margin(folder: Path, instance: dict) -> float:
    """w·x + b of an Angel LR model for one sparse instance, read straight from its text files
    (rows of `col,value`)."""
    rows = [line.split(",") for line in (folder / "input_weight/0").read_text().split()][:123]
    weights = {int(col): float(value) for col, value in rows}
    bias = float((folder / "input_bias/0").read_text().split()[0].split(",")[1])
    pairs = zip(instance["sparseIndices"], instance["sparseValues"], strict=True)
    return sum(weights.get(i, 0.0) * v for i, v in pairs) + bias
