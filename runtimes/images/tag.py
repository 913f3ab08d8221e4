"""The tag of a runtime image, ``ems-runtime-<runtime>:<hash of its inputs>``, without Django.

One function for both sides: ``runtimes/build-images`` builds and names images with it, and the
control plane (``serving.reconciler.support.image_for``) names the image an instance runs with
it, so a changed runtime can never run on a stale image. The inputs, hashed exactly as the
build scripts always have (images built before this module keep their tags):

- the base image tag: ``docker/base/build``'s ``<name>:<sha256 of the build script and its
  package lists>[:12]`` (``ems-base-java`` for PMML); for TensorRT ``EMS_TENSORRT_BASE`` when set;
- ``runtimes/images/Dockerfile`` and ``runtimes/images/requirements-<runtime>.txt``;
- every ``*.py``, ``*.json`` and ``*.txt`` file of ``runtimes/`` outside ``runtimes/images/``.

    python -m runtimes.images.tag RUNTIME [--base BASE_TAG]   # prints the tag
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "runtimes" / "images"
BASE_DIR = ROOT / "docker" / "base"
SOURCE_SUFFIXES = (".py", ".json", ".txt")
BASE_VARIANT = {"pmml": "java"}


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def base_tag(runtime: str, root: Path = ROOT) -> str:
    """What ``docker/base/build [--variant V] --print-tag`` prints for this runtime's base."""
    if runtime == "tensorrt" and os.environ.get("EMS_TENSORRT_BASE"):
        return os.environ["EMS_TENSORRT_BASE"]
    base_dir = root / "docker" / "base"
    inputs = [base_dir / "build", base_dir / "packages.txt"]
    name = "ems-base"
    variant = BASE_VARIANT.get(runtime)
    if variant:
        inputs.append(base_dir / f"packages-{variant}.txt")
        name = f"ems-base-{variant}"
    return f"{name}:{_short(b''.join(p.read_bytes() for p in inputs))}"


def source_files(root: Path = ROOT) -> list[str]:
    """``runtimes/…`` paths of the hashed sources, in byte order (``LC_ALL=C sort``)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root / "runtimes"):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == "runtimes/images":
            dirnames[:] = []
            continue
        for name in filenames:
            rel = f"{rel_dir}/{name}"
            if "/__pycache__/" in f"/{rel}" or not name.endswith(SOURCE_SUFFIXES):
                continue
            if (root / rel).is_file() and not (root / rel).is_symlink():
                found.append(rel)
    return sorted(found, key=lambda p: p.encode())


def sources_hash(root: Path = ROOT) -> str:
    """``sha256sum`` of every source, that listing hashed again (the shell's ``sources_hash``)."""
    listing = b"".join(
        f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n".encode()
        for rel in source_files(root)
    )
    return _short(listing)


def image_tag(runtime: str, base: str | None = None, root: Path = ROOT) -> str:
    """``ems-runtime-<runtime>:<12 hex digits>``; raises ``FileNotFoundError`` for a runtime
    with no ``requirements-<runtime>.txt``."""
    images = root / "runtimes" / "images"
    requirements = images / f"requirements-{runtime}.txt"
    if not requirements.is_file():
        raise FileNotFoundError(f"unknown runtime {runtime!r}: no {requirements.name}")
    base = base or base_tag(runtime, root)
    data = (
        f"{base}\n".encode()
        + (images / "Dockerfile").read_bytes()
        + requirements.read_bytes()
        + f"{sources_hash(root)}\n".encode()
    )
    return f"ems-runtime-{runtime}:{_short(data)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a runtime image's tag.")
    parser.add_argument("runtime")
    parser.add_argument("--base", help="the base image tag (default: docker/base/build's)")
    args = parser.parse_args(argv)
    try:
        print(image_tag(args.runtime, args.base))
    except FileNotFoundError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
