"""The model cache of a node: one folder per model version, keyed by its manifest digest.

``ensure(digest, fill)`` returns the entry's folder, filling it once: concurrent callers on the
node (threads or processes) take a per-entry file lock (``.lock-<digest>``, ``flock``), so one
fills while the others wait and then reuse its entry. ``fill(dest)`` writes the model into
``dest`` inside a private temporary folder, which is then renamed into place, so an entry is
either complete or absent (were the lock not honoured, e.g. on a network file system, the
first rename still wins and the others throw their copy away). Entries are made world-readable
(the runtime containers run as uid 10001, not as the portal's user). ``gc(in_use)`` removes
entries no instance uses, once they have been unused for ``min_age`` seconds (an entry just
filled for an instance that is about to start is never taken from under it).

The cache lives on the node's file system: for the local Docker engine and the process backend
that is the portal's host (``EMS_MODEL_CACHE_DIR``). Django-free.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

_DIGEST = re.compile(r"^[0-9a-f]{16,128}$")
_TMP_PREFIX = ".fill-"
_LOCK_PREFIX = ".lock-"


class ModelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _entry(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise ValueError(f"not a manifest digest: {digest!r}")
        return self.root / digest

    def path(self, digest: str) -> Path | None:
        entry = self._entry(digest)
        return entry if entry.is_dir() else None

    def ensure(self, digest: str, fill: Callable[[Path], object]) -> Path:
        entry = self._entry(digest)
        if entry.is_dir():
            os.utime(entry)  # last use, for gc's min_age
            return entry
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        with self._filling(digest):
            if entry.is_dir():  # another caller filled it while we waited for the lock
                os.utime(entry)
                return entry
            return self._fill(digest, entry, fill)

    @contextlib.contextmanager
    def _filling(self, digest: str) -> Iterator[None]:
        fd = os.open(self.root / f"{_LOCK_PREFIX}{digest}", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _fill(self, digest: str, entry: Path, fill: Callable[[Path], object]) -> Path:
        tmp = self.root / f"{_TMP_PREFIX}{digest}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            dest = tmp / "m"
            fill(dest)
            if not dest.is_dir():
                raise FileNotFoundError(f"filling the cache wrote nothing for {digest}")
            _world_readable(dest)
            try:
                dest.rename(entry)
            except OSError:
                if not entry.is_dir():
                    raise
                # another filler renamed first: theirs is complete and identical
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        os.utime(entry)
        return entry

    def entries(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _DIGEST.match(p.name))

    def gc(self, in_use: Iterable[str], *, min_age: float = 600.0) -> list[str]:
        """Remove unused entries (and abandoned temporary folders); returns removed digests."""
        keep = set(in_use)
        now = time.time()
        removed = []
        if not self.root.is_dir():
            return removed
        for path in self.root.iterdir():
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if path.name.startswith(_TMP_PREFIX):
                if age > max(min_age, 3600):
                    shutil.rmtree(path, ignore_errors=True)
                continue
            if path.name in keep or age < min_age or not _DIGEST.match(path.name):
                continue
            # rename first so a reader never sees half an entry; then delete at leisure
            doomed = self.root / f"{_TMP_PREFIX}gc-{path.name}-{uuid.uuid4().hex}"
            try:
                path.rename(doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(path.name)
        return removed


def _world_readable(root: Path) -> None:
    root.chmod(0o755)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)  # noqa: S103 - uid 10001 reads
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)
