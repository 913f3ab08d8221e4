"""Uploading a model folder into a tenant's bucket: many files with relative paths, or a zip.

Everything is checked before the first byte is written, so a refused upload writes nothing:
names (no ``..``, no absolute paths, no backslashes), the total size (``EMS_UPLOAD_MAX_BYTES``,
refused with 413), and for zips the entry count, the total uncompressed size and the
compression ratio of each entry (zip bombs), symlinks, devices and encrypted entries. Files are
streamed to the store chunk by chunk; nested archives are stored as files, never expanded. If the
store fails half way, the files already written are deleted again.
"""

from __future__ import annotations

import contextlib
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from models_repo.storage import StorageError, TenantStorage
from models_repo.storage.base import ObjectInfo, check_key, check_prefix

MiB = 1024 * 1024
RATIO_FLOOR_BYTES = MiB  # below this an entry may compress as well as it likes


class UploadRefused(Exception):
    """A refused upload; ``status`` is the HTTP status to answer with (400 or 413)."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 2048 * MiB
    zip_max_total_bytes: int = 4096 * MiB
    zip_max_entries: int = 10_000
    zip_max_ratio: int = 200

    @classmethod
    def from_settings(cls) -> UploadLimits:
        from django.conf import settings

        return cls(
            max_bytes=settings.EMS_UPLOAD_MAX_BYTES,
            zip_max_total_bytes=settings.EMS_UPLOAD_ZIP_MAX_TOTAL_BYTES,
            zip_max_entries=settings.EMS_UPLOAD_ZIP_MAX_ENTRIES,
            zip_max_ratio=settings.EMS_UPLOAD_ZIP_MAX_RATIO,
        )


@dataclass(frozen=True)
class UploadedFile:
    """One file of a folder upload: its path relative to the chosen folder, a stream, a size."""

    path: str
    stream: BinaryIO
    size: int


def check_relative_path(path: str) -> str:
    """``variables/variables.index`` is fine; ``../x``, ``/etc/x``, ``C:\\x``, ``a//b`` are not."""
    if not path or path.startswith("/") or "\\" in path or (len(path) > 1 and path[1] == ":"):
        raise UploadRefused(f"{path!r}: an absolute path or a backslash is not allowed.")
    parts = path.split("/")
    if ".." in parts:
        raise UploadRefused(f"{path!r}: '..' is not allowed in a path.")
    try:
        return check_key(path)
    except StorageError as exc:
        raise UploadRefused(str(exc)) from None


def _target_prefix(storage: TenantStorage, bucket: str, prefix: str) -> str:
    if not prefix:
        raise UploadRefused("Choose a folder to upload into (e.g. models/my-model/).")
    try:
        prefix = check_prefix(prefix if prefix.endswith("/") else prefix + "/")
    except StorageError as exc:
        raise UploadRefused(str(exc)) from None
    page = storage.list_folder(bucket, prefix, page_size=1)
    if page.objects or page.folders:
        raise UploadRefused(
            f"{bucket}/{prefix} already holds files; upload into a new folder so no existing "
            "version's files change.",
            status=409,
        )
    return prefix


def _write_all(storage, bucket: str, items: Iterable[tuple[str, BinaryIO]]) -> list[ObjectInfo]:
    written: list[ObjectInfo] = []
    try:
        for key, stream in items:
            written.append(storage.write(bucket, key, stream))
    except BaseException:
        for info in written:
            with contextlib.suppress(StorageError):
                storage.delete(bucket, info.key)
        raise
    return written


def upload_folder(
    storage: TenantStorage,
    *,
    bucket: str,
    prefix: str,
    files: list[UploadedFile],
    limits: UploadLimits,
) -> list[ObjectInfo]:
    if not files:
        raise UploadRefused("No files were sent.")
    total = sum(item.size for item in files)
    if total > limits.max_bytes:
        raise UploadRefused(
            f"The upload is {total} bytes; the limit is {limits.max_bytes}.", status=413
        )
    paths = [check_relative_path(item.path) for item in files]
    if len(set(paths)) != len(paths):
        raise UploadRefused("The same path was sent twice.")
    prefix = _target_prefix(storage, bucket, prefix)
    return _write_all(
        storage,
        bucket,
        ((prefix + path, item.stream) for path, item in zip(paths, files, strict=True)),
    )


def _check_zip_entries(archive: zipfile.ZipFile, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    entries = archive.infolist()
    if len(entries) > limits.zip_max_entries:
        raise UploadRefused(
            f"The zip holds {len(entries)} entries; at most {limits.zip_max_entries}."
        )
    files, names, total = [], set(), 0
    for info in entries:
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadRefused(f"{info.filename!r} is a symbolic link; links are not allowed.")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UploadRefused(f"{info.filename!r} is a device or special file.")
        if info.flag_bits & 0x1:
            raise UploadRefused(f"{info.filename!r} is encrypted.")
        name = info.filename
        if info.is_dir():
            check_relative_path(name.rstrip("/") + "/x")  # the folder name itself must be safe
            continue
        check_relative_path(name)
        if name in names:
            raise UploadRefused(f"{name!r} appears twice in the zip.")
        names.add(name)
        if info.file_size >= RATIO_FLOOR_BYTES and (
            info.file_size > limits.zip_max_ratio * max(info.compress_size, 1)
        ):
            raise UploadRefused(
                f"{name!r} expands {info.file_size // max(info.compress_size, 1)}-fold; at most "
                f"{limits.zip_max_ratio}-fold is accepted (zip bomb guard)."
            )
        total += info.file_size
        if total > limits.zip_max_total_bytes:
            raise UploadRefused(
                f"The zip expands to more than {limits.zip_max_total_bytes} bytes.", status=413
            )
        files.append(info)
    if not files:
        raise UploadRefused("The zip holds no files.")
    return files


class _Capped:
    """Reads an entry and refuses to give more bytes than its header declared.

    Defence in depth: CPython's zipfile already stops at the declared size (an entry whose
    body is longer then fails its CRC check and the upload is refused as damaged, see
    tests/models_repo/test_mr_uploads.py), so this only matters for a reader that would not."""

    def __init__(self, stream: BinaryIO, declared: int, name: str):
        self.stream, self.left, self.name = stream, declared, name

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size is not None and size >= 0 else 1 << 20)
        self.left -= len(data)
        if self.left < 0:
            raise UploadRefused(f"{self.name!r} is larger than its header says.")
        return data


def upload_zip(
    storage: TenantStorage,
    *,
    bucket: str,
    prefix: str,
    stream: BinaryIO,
    size: int,
    limits: UploadLimits,
) -> list[ObjectInfo]:
    if size > limits.max_bytes:
        raise UploadRefused(
            f"The upload is {size} bytes; the limit is {limits.max_bytes}.", status=413
        )
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UploadRefused("The file is not a zip archive.") from None
    with archive:
        entries = _check_zip_entries(archive, limits)
        prefix = _target_prefix(storage, bucket, prefix)

        def items():
            for info in entries:
                with archive.open(info) as entry:
                    yield prefix + info.filename, _Capped(entry, info.file_size, info.filename)

        try:
            return _write_all(storage, bucket, items())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise UploadRefused(f"The zip is damaged ({exc}).") from None
