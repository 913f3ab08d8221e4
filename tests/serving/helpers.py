"""Helpers for the serving tests: runtime images, world-readable temp folders, predictions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def angel_model() -> Path:
    """The Angel LR test model (the shared test data; a failure in CI when missing)."""
    from tests.testdata import require_testdata

    return require_testdata() / "models/angel/lr/lr-model"


def angel_lr_variant(dest: Path, *, bias: float) -> Path:
    """A copy of the Angel LR test model (``dest/6``) with another bias: the same features,
    different weights, different answers — and another manifest digest (another cache entry)."""
    shutil.copytree(angel_model(), dest)
    (dest / "6" / "input_bias" / "0").write_text(f"0,{bias!r}\n")
    return dest


def lr_reference(model: Path, indices: list[int]) -> float:
    """``w·x + b`` straight from an Angel LR folder's text files, x = 1.0 at ``indices`` (the
    answer the runtime's "pred" must give; computed independently of the runtime)."""
    rows = [line.split(",") for line in (model / "6/input_weight/0").read_text().split()][:123]
    weights = {int(col): float(value) for col, value in rows}
    bias = float((model / "6/input_bias/0").read_text().split()[0].split(",")[1])
    return sum(weights.get(i, 0.0) for i in indices) + bias


LR_INDICES = [1, 5, 17]
LR_BODY = {"instances": [{"sparseIndices": LR_INDICES, "sparseValues": [1.0] * len(LR_INDICES)}]}


def lr_pred(base_url: str) -> float:
    """The "pred" an Angel LR instance (or a gateway URL of one) answers for ``LR_BODY``."""
    return post_json(f"{base_url}/v1/models/m:predict", LR_BODY)["predictions"][0]["pred"]


def open_tmp(prefix: str = "ems-sv-") -> Path:
    """A temp folder the runtime containers' user (uid 10001) can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def build_image(runtime: str) -> str:
    result = subprocess.run(
        [str(ROOT / "runtimes" / "build-images"), runtime],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building {runtime} failed: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def post_json(url: str, body, timeout: float = 30.0):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
