"""The object storage interface: the same operations on an S3-compatible store and on a local
folder. Django-free; ``models_repo.storage.get_storage`` binds a backend to one tenant."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from models_repo.addresses import AddressError, normalize_key

DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 1000


class StorageError(Exception):
    """A failure of the store. ``transient`` says whether retrying may help."""

    transient = False


class TransientStorageError(StorageError):
    transient = True


class NotFound(StorageError):
    pass


class BucketNotFound(NotFound):
    pass


class AccessRefused(StorageError):
    """The key or bucket lies outside what this tenant may touch."""


@dataclass(frozen=True)
class BucketInfo:
    name: str
    region: str | None = None
    created: dt.datetime | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: dt.datetime | None = None


@dataclass(frozen=True)
class Page:
    """One page of a folder listing: sub-folders (``prefix/``) and files directly inside."""

    folders: list[str] = field(default_factory=list)
    objects: list[ObjectInfo] = field(default_factory=list)
    next_token: str | None = None


def check_key(key: str) -> str:
    """A file key: no leading slash, no empty, ``.`` or ``..`` segment, no backslash."""
    if not key or key.endswith("/"):
        raise AccessRefused(f"{key!r} is not a file key.")
    try:
        normalize_key(key + "/")
    except AddressError as exc:
        raise AccessRefused(f"{key!r}: {exc.message}") from None
    return key


def check_prefix(prefix: str) -> str:
    """A folder prefix: empty (the bucket root) or a checked path ending in ``/``."""
    if prefix == "":
        return prefix
    try:
        return normalize_key(prefix)
    except AddressError as exc:
        raise AccessRefused(f"{prefix!r}: {exc.message}") from None


class LimitedReader:
    """At most ``limit`` bytes of a stream; closes the stream with itself."""

    def __init__(self, stream: BinaryIO, limit: int):
        self.stream, self.left = stream, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(want)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def slice_stream(stream: BinaryIO, start: int, end: int) -> LimitedReader:
    """The bytes ``[start, end)`` of a stream positioned at its beginning, read past."""
    skip = start
    while skip > 0:
        chunk = stream.read(min(skip, 1 << 20))
        if not chunk:
            break
        skip -= len(chunk)
    return LimitedReader(stream, max(0, end - start))


class Backend(ABC):
    """Raw operations on (bucket, key). Callers use a ``TenantStorage``, which checks names."""

    @abstractmethod
    def create_bucket(self, name: str, *, region: str) -> BucketInfo: ...

    @abstractmethod
    def list_buckets(self) -> list[BucketInfo]: ...

    @abstractmethod
    def bucket_info(self, name: str) -> BucketInfo:
        """Raises ``BucketNotFound``."""

    @abstractmethod
    def list_folder(
        self, bucket: str, prefix: str, *, page_size: int, token: str | None
    ) -> Page: ...

    @abstractmethod
    def walk(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every file under ``prefix``, recursively, in key order."""

    @abstractmethod
    def stat(self, bucket: str, key: str) -> ObjectInfo: ...

    @abstractmethod
    def open(self, bucket: str, key: str) -> BinaryIO: ...

    def open_range(self, bucket: str, key: str, start: int, end: int) -> BinaryIO:
        """The bytes ``[start, end)`` of an object (fewer when it is shorter). This fallback
        reads past the first ``start`` bytes; the backends override it with a seek or a ranged
        GET, so a reader of one slice of a large object does not pay for what comes before."""
        return slice_stream(self.open(bucket, key), start, end)

    @abstractmethod
    def write(self, bucket: str, key: str, stream: BinaryIO) -> ObjectInfo: ...

    @abstractmethod
    def delete(self, bucket: str, key: str) -> None: ...

    def download(self, bucket: str, key: str, target: Path) -> None:
        with self.open(bucket, key) as source, target.open("wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
