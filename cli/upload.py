"""Uploading a model folder: one streamed multipart body (files + their relative paths) with a
progress bar, so a large folder is never held in memory."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK = 256 * 1024


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``folder`` with its POSIX path relative to it, sorted."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; copy the file in instead")
        if path.is_file():
            files.append((path.relative_to(folder).as_posix(), path))
    if not files:
        raise ValueError(f"{folder} holds no files")
    return files


class MultipartBody:
    """``prefix``, then ``paths`` and ``files`` in the same order, as the upload API takes them.

    Iterating yields the body in chunks and reports bytes sent; ``len()`` is exact, so the
    request carries a Content-Length and the server can refuse an oversize upload up front."""

    def __init__(self, prefix: str, files: list[tuple[str, Path]]):
        self.boundary = "ems-" + secrets.token_hex(16)
        self.prefix = prefix
        self.files = files
        self.on_progress: Callable[[int], None] = lambda n: None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _field(self, name: str, value: str) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()

    def _file_head(self, relative: str) -> bytes:
        name = relative.replace('"', "%22")
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()

    def _fields(self) -> bytes:
        head = self._field("prefix", self.prefix)
        return head + b"".join(self._field("paths", rel) for rel, _ in self.files)

    def __len__(self) -> int:
        total = len(self._fields()) + len(f"--{self.boundary}--\r\n")
        for relative, path in self.files:
            total += len(self._file_head(relative)) + path.stat().st_size + 2
        return total

    def __iter__(self) -> Iterator[bytes]:
        yield self._fields()
        for relative, path in self.files:
            yield self._file_head(relative)
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    self.on_progress(len(chunk))
                    yield chunk
            yield b"\r\n"
        yield f"--{self.boundary}--\r\n".encode()
