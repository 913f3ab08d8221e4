"""One object of a bucket as an HTTP download: shared by the API and the bucket browser."""

from __future__ import annotations

import mimetypes
import posixpath
from collections.abc import Iterator
from typing import BinaryIO

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

from models_repo.storage import ObjectInfo

CHUNK = 1 << 16
# Types Python's table does not know, for the files batch jobs read and write.
EXTRA_TYPES = {".jsonl": "application/jsonl", ".ndjson": "application/x-ndjson"}


def content_type(key: str) -> str:
    extension = posixpath.splitext(key)[1].lower()
    if extension in EXTRA_TYPES:
        return EXTRA_TYPES[extension]
    guessed, encoding = mimetypes.guess_type(key, strict=False)
    if encoding or not guessed:  # a .gz is the gzip file itself, not its contents' type
        return "application/octet-stream"
    return guessed


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


def object_response(info: ObjectInfo, stream: BinaryIO) -> StreamingHttpResponse:
    """Streams ``stream`` (closed at the end, or when the client goes away) as an attachment:
    never rendered by the browser, whatever the file holds."""
    response = StreamingHttpResponse(_chunks(stream), content_type=content_type(info.key))
    response["Content-Length"] = str(info.size)
    name = posixpath.basename(info.key)
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["X-Content-Type-Options"] = "nosniff"
    if info.etag:
        response["ETag"] = f'"{info.etag.strip(chr(34))}"'
    return response
