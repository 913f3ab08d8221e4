"""``runtimes/images/tag.py``: one Django-free function names runtime images for the build script
and for the control plane, with the same tags the shell script always computed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from runtimes.images import tag

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ["angel", "openvino", "pmml", "tensorrt", "tfserving"]

# The tag as runtimes/build-images computed it before the function existed (kept here verbatim,
# so images built by earlier CI runs keep their names).
SHELL_TAG = r"""
set -euo pipefail
cd "$1"; runtime=$2
case "$runtime" in pmml) base=$(docker/base/build --variant java --print-tag) ;;
  *) base=$(docker/base/build --print-tag) ;; esac
sources=$(find runtimes -path runtimes/images -prune -o -type f \
   \( -name '*.py' -o -name '*.json' -o -name '*.txt' \) -not -path '*/__pycache__/*' -print \
   | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
h=$( { echo "$base"; cat runtimes/images/Dockerfile "runtimes/images/requirements-$runtime.txt";
       echo "$sources"; } | sha256sum | cut -c1-12)
echo "ems-runtime-$runtime:$h"
"""


def shell_tag(root: Path, runtime: str) -> str:
    result = subprocess.run(
        ["bash", "-c", SHELL_TAG, "shell-tag", str(root), runtime],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"},
    )
    return result.stdout.strip()


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the inputs (runtimes/ and docker/base/) to change without touching the repo."""
    shutil.copytree(
        ROOT / "runtimes", tmp_path / "runtimes", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copytree(ROOT / "docker" / "base", tmp_path / "docker" / "base")
    return tmp_path


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_function_gives_the_shell_scripts_tag(runtime, monkeypatch):
    monkeypatch.delenv("EMS_TENSORRT_BASE", raising=False)
    assert tag.image_tag(runtime) == shell_tag(ROOT, runtime)


def test_build_images_prints_the_functions_tag(monkeypatch):
    monkeypatch.delenv("EMS_TENSORRT_BASE", raising=False)
    printed = subprocess.run(
        [str(ROOT / "runtimes" / "build-images"), "--print-tag", "pmml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == tag.image_tag("pmml")
    assert printed.startswith("ems-runtime-pmml:") and len(printed.split(":")[1]) == 12


def test_any_input_changes_the_tag_and_nothing_else_does(tree):
    before = tag.image_tag("angel", root=tree)
    assert before == shell_tag(tree, "angel")
    # not inputs: the images folder itself (this module lives there) and byte-code caches
    (tree / "runtimes" / "images" / "notes.txt").write_text("x")
    (tree / "runtimes" / "__pycache__").mkdir(exist_ok=True)
    (tree / "runtimes" / "__pycache__" / "junk.txt").write_text("x")
    assert tag.image_tag("angel", root=tree) == before
    # inputs: a runtime source, the runtime's requirements, the Dockerfile, the base's packages
    changes = [
        tree / "runtimes" / "loaders" / "angel.py",
        tree / "runtimes" / "images" / "requirements-angel.txt",
        tree / "runtimes" / "images" / "Dockerfile",
        tree / "docker" / "base" / "packages.txt",
    ]
    seen = {before}
    for path in changes:
        path.write_bytes(path.read_bytes() + b"\n# changed\n")
        now = tag.image_tag("angel", root=tree)
        assert now not in seen, path
        assert now == shell_tag(tree, "angel"), path
        seen.add(now)


def test_java_base_only_for_pmml_and_tensorrt_base_from_the_environment(monkeypatch):
    monkeypatch.delenv("EMS_TENSORRT_BASE", raising=False)
    assert tag.base_tag("pmml").startswith("ems-base-java:")
    assert tag.base_tag("angel").startswith("ems-base:")
    monkeypatch.setenv("EMS_TENSORRT_BASE", "nvcr.io/nvidia/tensorrt:24.08-py3")
    assert tag.base_tag("tensorrt") == "nvcr.io/nvidia/tensorrt:24.08-py3"
    assert tag.image_tag("tensorrt") != tag.image_tag("tensorrt", base=tag.base_tag("angel"))


def test_an_unknown_runtime_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="unknown runtime 'nope'"):
        tag.image_tag("nope")
    bad = subprocess.run(
        [str(ROOT / "runtimes" / "build-images"), "--print-tag", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "unknown runtime 'nope'" in bad.stderr
