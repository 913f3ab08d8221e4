"""The embedded default store: a local folder laid out as ``<root>/<bucket>/<key>``.

Bucket metadata (its region) lives in ``<root>/.buckets/<bucket>.json``; no bucket name can
start with a dot, so it never clashes with a bucket. Every path is resolved and must stay inside
its bucket's folder: symlinks and ``..`` cannot reach anything else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from models_repo.storage.base import (
    AccessRefused,
    Backend,
    BucketInfo,
    BucketNotFound,
    LimitedReader,
    NotFound,
    ObjectInfo,
    Page,
)

_META = ".buckets"


def _etag(stat: os.stat_result) -> str:
    # A cheap change tag: our writes replace files (new inode, new mtime), and any edit in
    # place moves the mtime. Hashing contents would read every model file on each listing.
    raw = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _modified(stat: os.stat_result) -> dt.datetime:
    return dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.UTC)


class LocalBackend(Backend):
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    # --- paths ------------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        if not bucket or bucket.startswith(".") or "/" in bucket or "\\" in bucket:
            raise AccessRefused(f"{bucket!r} is not a bucket name.")
        return self.root / bucket

    def _existing_bucket(self, bucket: str) -> Path:
        path = self._bucket_dir(bucket)
        if not path.is_dir():
            raise BucketNotFound(f"There is no bucket {bucket}.")
        return path

    def _path(self, bucket: str, key: str) -> Path:
        base = self._existing_bucket(bucket).resolve()
        path = (base / key).resolve()
        if path != base and not path.is_relative_to(base):
            raise AccessRefused(f"{key!r} lies outside the bucket {bucket}.")
        return path

    def _info(self, bucket: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        base = self._existing_bucket(bucket).resolve()
        key = path.relative_to(base).as_posix()
        return ObjectInfo(key=key, size=stat.st_size, etag=_etag(stat), modified=_modified(stat))

    # --- buckets ----------------------------------------------------------------------------
    def create_bucket(self, name: str, *, region: str) -> BucketInfo:
        path = self._bucket_dir(name)
        path.mkdir(parents=True, exist_ok=True)
        meta = self.root / _META
        meta.mkdir(exist_ok=True)
        (meta / f"{name}.json").write_text(json.dumps({"region": region}))
        return self.bucket_info(name)

    def bucket_info(self, name: str) -> BucketInfo:
        path = self._existing_bucket(name)
        region = None
        meta = self.root / _META / f"{name}.json"
        if meta.is_file():
            region = json.loads(meta.read_text()).get("region")
        return BucketInfo(name=name, region=region, created=_modified(path.stat()))

    def list_buckets(self) -> list[BucketInfo]:
        if not self.root.is_dir():
            return []
        names = sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith(".")
        )
        return [self.bucket_info(name) for name in names]

    # --- objects ----------------------------------------------------------------------------
    def list_folder(self, bucket: str, prefix: str, *, page_size: int, token: str | None) -> Page:
        folder = self._path(bucket, prefix) if prefix else self._existing_bucket(bucket)
        if not folder.is_dir():
            return Page()
        entries = []
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_symlink() or entry.name.startswith(".ems-upload-"):
                continue
            name = prefix + entry.name + ("/" if entry.is_dir() else "")
            if token is not None and name <= token:
                continue
            entries.append((name, entry))
        chosen = entries[:page_size]
        next_token = chosen[-1][0] if len(entries) > page_size else None
        folders = [name for name, entry in chosen if entry.is_dir()]
        objects = [self._info(bucket, entry) for _, entry in chosen if entry.is_file()]
        return Page(folders=folders, objects=objects, next_token=next_token)

    def walk(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        folder = self._path(bucket, prefix) if prefix else self._existing_bucket(bucket)
        if not folder.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
            for filename in filenames:
                path = Path(dirpath, filename)
                if path.is_symlink() or filename.startswith(".ems-upload-"):
                    continue
                found.append(self._info(bucket, path))
        yield from sorted(found, key=lambda info: info.key)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        path = self._path(bucket, key)
        if not path.is_file() or path.is_symlink():
            raise NotFound(f"There is no file {key} in {bucket}.")
        return self._info(bucket, path)

    def open(self, bucket: str, key: str) -> BinaryIO:
        self.stat(bucket, key)
        return self._path(bucket, key).open("rb")

    def open_range(self, bucket: str, key: str, start: int, end: int) -> BinaryIO:
        stream = self.open(bucket, key)
        stream.seek(start)
        return LimitedReader(stream, max(0, end - start))

    def write(self, bucket: str, key: str, stream: BinaryIO) -> ObjectInfo:
        path = self._path(bucket, key)
        if path.is_dir():
            raise AccessRefused(f"{key} is a folder.")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Stream into a temporary file beside the target, then rename: readers never see half.
        fd, tmp = tempfile.mkstemp(prefix=".ems-upload-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as sink:
                while chunk := stream.read(1 << 20):
                    sink.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._info(bucket, path)

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        if path.is_file():
            path.unlink()
        # folders exist only through their objects, as in S3: drop the ones left empty
        root = self._existing_bucket(bucket).resolve()
        parent = path.parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop climbing
                break
            parent = parent.parent
