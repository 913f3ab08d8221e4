"""What a validator sees of a model folder: the file list (relative key → size) and a reader."""

from __future__ import annotations

import os
from pathlib import Path

MAX_READ_BYTES = 64 * 1024 * 1024


class ModelFolder:
    """A folder of files; ``files`` maps keys relative to the folder (``a/b.txt``) to sizes."""

    files: dict[str, int]

    def read(self, key: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        raise NotImplementedError

    def sub(self, prefix: str) -> ModelFolder:
        """The folder ``prefix/`` inside this one."""
        return SubFolder(self, prefix.rstrip("/") + "/")

    def top(self) -> tuple[set[str], set[str]]:
        """(file names, folder names) directly inside."""
        files, folders = set(), set()
        for key in self.files:
            head, sep, _ = key.partition("/")
            (folders if sep else files).add(head)
        return files, folders


class SubFolder(ModelFolder):
    def __init__(self, parent: ModelFolder, prefix: str):
        self.parent = parent
        self.prefix = prefix
        self.files = {
            key[len(prefix) :]: size for key, size in parent.files.items() if key.startswith(prefix)
        }

    def read(self, key: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        return self.parent.read(self.prefix + key, max_bytes=max_bytes)


class LocalFolder(ModelFolder):
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.files = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
            for name in filenames:
                full = Path(dirpath, name)
                if not full.is_symlink():
                    self.files[full.relative_to(self.path).as_posix()] = full.stat().st_size

    def read(self, key: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        if key not in self.files:
            raise FileNotFoundError(key)
        with (self.path / key).open("rb") as handle:
            return handle.read(max_bytes)


class StorageFolder(ModelFolder):
    """A folder in a tenant's bucket, read through ``TenantStorage``."""

    def __init__(self, storage, bucket: str, prefix: str):
        self.storage = storage
        self.bucket = bucket
        self.prefix = prefix
        # (relative key, size, ETag) of every file, kept for the manifest.
        self.infos = [
            (info.key[len(prefix) :], info.size, info.etag) for info in storage.walk(bucket, prefix)
        ]
        self.files = {key: size for key, size, _ in self.infos}

    def read(self, key: str, *, max_bytes: int = MAX_READ_BYTES) -> bytes:
        stream = self.storage.open(self.bucket, self.prefix + key)
        try:
            return stream.read(max_bytes)
        finally:
            stream.close()
