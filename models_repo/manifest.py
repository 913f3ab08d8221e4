"""The manifest of a model folder: (key, size, ETag) per file and a SHA-256 digest of the whole.

Taken when a version is created; compared again before a deploy so a folder changed in the
bucket is refused, naming the file. The digest keys the nodes' model cache. Django-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from models_repo.storage.base import ObjectInfo


@dataclass(frozen=True)
class Manifest:
    files: tuple[tuple[str, int, str], ...]
    digest: str

    def as_json(self) -> list[dict]:
        return [{"key": key, "size": size, "etag": etag} for key, size, etag in self.files]

    @classmethod
    def from_json(cls, files: list[dict]) -> Manifest:
        return build_manifest((item["key"], item["size"], item["etag"]) for item in files)

    @property
    def total_size(self) -> int:
        return sum(size for _, size, _ in self.files)


def build_manifest(entries: Iterable[ObjectInfo | tuple[str, int, str]]) -> Manifest:
    """Entries have keys relative to the model folder; order does not matter."""
    rows = []
    for entry in entries:
        if isinstance(entry, ObjectInfo):
            rows.append((entry.key, int(entry.size), entry.etag))
        else:
            key, size, etag = entry
            rows.append((key, int(size), str(etag)))
    rows.sort()
    canonical = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    return Manifest(files=tuple(rows), digest=hashlib.sha256(canonical).hexdigest())


def folder_manifest(storage, bucket: str, prefix: str) -> Manifest:
    """The manifest of ``bucket/prefix`` as it is now, keys relative to ``prefix``."""
    return build_manifest(
        (info.key[len(prefix) :], info.size, info.etag) for info in storage.walk(bucket, prefix)
    )


def diff_manifest(old: Manifest, new: Manifest) -> str | None:
    """None when equal, otherwise a sentence naming the first differing file (in key order)."""
    if old.digest == new.digest:
        return None
    before = {key: (size, etag) for key, size, etag in old.files}
    after = {key: (size, etag) for key, size, etag in new.files}
    for key in sorted(set(before) | set(after)):
        if key not in after:
            return f"{key} was removed from the model folder."
        if key not in before:
            return f"{key} was added to the model folder."
        if before[key] != after[key]:
            return (
                f"{key} changed (size {before[key][0]} → {after[key][0]}, ETag differs)."
                if (before[key][0] != after[key][0])
                else f"{key} changed (its ETag differs)."
            )
    return "The model folder changed."
