"""An S3-compatible store (Tencent COS, MinIO, AWS S3, moto) through boto3.

COS needs virtual-host addressing (``https://<bucket>.cos.<region>.myqcloud.com/<key>``); test
servers usually want path style. Errors are classified: throttling, 5xx and connection failures
are transient; the rest are permanent.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from models_repo.storage.base import (
    AccessRefused,
    Backend,
    BucketInfo,
    BucketNotFound,
    LimitedReader,
    NotFound,
    ObjectInfo,
    Page,
    StorageError,
    TransientStorageError,
    slice_stream,
)

_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def endpoint_region(endpoint_url: str) -> str | None:
    """``https://cos.ap-beijing.myqcloud.com`` → ``ap-beijing`` (COS signs with its region)."""
    match = re.match(r"^https?://cos\.([a-z0-9-]+)\.myqcloud\.com(:\d+)?/?$", endpoint_url or "")
    return match.group(1) if match else None


def _classify(exc: Exception, what: str) -> StorageError:
    if isinstance(exc, EndpointConnectionError):
        return TransientStorageError(f"{what}: the object store does not answer ({exc}).")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in {"NoSuchBucket"}:
            return BucketNotFound(f"{what}: no such bucket.")
        if code in {"NoSuchKey", "404", "NotFound"} or status == 404:
            return NotFound(f"{what}: not found.")
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return AccessRefused(f"{what}: the object store refused access ({code}).")
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientStorageError(f"{what}: the object store failed ({code}).")
        return StorageError(f"{what}: {code or status} {error.get('Message', '')}".strip())
    return TransientStorageError(f"{what}: {exc}")


class S3Backend(Backend):
    def __init__(
        self,
        *,
        endpoint_url: str,
        addressing_style: str = "virtual",
        credentials: Credentials | None = None,
        region_name: str | None = None,
    ):
        if addressing_style not in {"virtual", "path"}:
            raise ValueError("addressing_style is virtual or path")
        self.endpoint_url = endpoint_url
        self.region_name = region_name or endpoint_region(endpoint_url) or "us-east-1"
        kwargs = {}
        if credentials is not None:
            kwargs = {
                "aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
                "aws_session_token": credentials.session_token,
            }
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=self.region_name,
            config=Config(
                s3={"addressing_style": addressing_style},
                signature_version="s3v4",
                # boto3 >= 1.36 adds CRC checksums by default; COS and other S3-compatible
                # stores do not all support them, so only send/verify them where required.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
            **kwargs,
        )

    def _call(self, what: str, method: str, **kwargs):
        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc, what) from exc

    def create_bucket(self, name: str, *, region: str) -> BucketInfo:
        kwargs = {"Bucket": name}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "BucketAlreadyOwnedByYou":
                raise _classify(exc, f"create bucket {name}") from exc
        return self.bucket_info(name)

    def bucket_info(self, name: str) -> BucketInfo:
        location = self._call(f"bucket {name}", "get_bucket_location", Bucket=name)
        region = location.get("LocationConstraint") or "us-east-1"
        return BucketInfo(name=name, region=region)

    def list_buckets(self) -> list[BucketInfo]:
        answer = self._call("list buckets", "list_buckets")
        return [
            BucketInfo(name=item["Name"], created=item.get("CreationDate"))
            for item in sorted(answer.get("Buckets", []), key=lambda item: item["Name"])
        ]

    @staticmethod
    def _object(item: dict) -> ObjectInfo:
        return ObjectInfo(
            key=item["Key"],
            size=int(item["Size"]),
            etag=str(item.get("ETag", "")).strip('"'),
            modified=item.get("LastModified"),
        )

    def list_folder(self, bucket: str, prefix: str, *, page_size: int, token: str | None) -> Page:
        kwargs = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": page_size}
        if token:
            kwargs["ContinuationToken"] = token
        answer = self._call(f"list {bucket}/{prefix}", "list_objects_v2", **kwargs)
        return Page(
            folders=[item["Prefix"] for item in answer.get("CommonPrefixes", [])],
            objects=[
                self._object(item)
                for item in answer.get("Contents", [])
                if not item["Key"].endswith("/")
            ],
            next_token=answer.get("NextContinuationToken") if answer.get("IsTruncated") else None,
        )

    def walk(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        while True:
            answer = self._call(f"list {bucket}/{prefix}", "list_objects_v2", **kwargs)
            for item in answer.get("Contents", []):
                if not item["Key"].endswith("/"):  # folder markers some consoles create
                    yield self._object(item)
            if not answer.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = answer["NextContinuationToken"]

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        answer = self._call(f"{bucket}/{key}", "head_object", Bucket=bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            etag=str(answer.get("ETag", "")).strip('"'),
            modified=answer.get("LastModified"),
        )

    def open(self, bucket: str, key: str) -> BinaryIO:
        answer = self._call(f"{bucket}/{key}", "get_object", Bucket=bucket, Key=key)
        return answer["Body"]

    def open_range(self, bucket: str, key: str, start: int, end: int) -> BinaryIO:
        if end <= start:
            return LimitedReader(io.BytesIO(), 0)
        try:
            answer = self.client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":  # start past the end
                return LimitedReader(io.BytesIO(), 0)
            raise _classify(exc, f"{bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise _classify(exc, f"{bucket}/{key}") from exc
        # a store that ignores Range answers 200 with the whole object: cut it here as well
        if answer.get("ResponseMetadata", {}).get("HTTPStatusCode") == 200:
            return slice_stream(answer["Body"], start, end)
        return LimitedReader(answer["Body"], end - start)

    def write(self, bucket: str, key: str, stream: BinaryIO) -> ObjectInfo:
        try:
            # upload_fileobj sends multipart chunks: the stream is never held whole in memory.
            self.client.upload_fileobj(stream, bucket, key)
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc, f"write {bucket}/{key}") from exc
        return self.stat(bucket, key)

    def delete(self, bucket: str, key: str) -> None:
        self._call(f"delete {bucket}/{key}", "delete_object", Bucket=bucket, Key=key)

    def download(self, bucket: str, key: str, target: Path) -> None:
        try:
            self.client.download_file(bucket, key, str(target))
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc, f"read {bucket}/{key}") from exc
