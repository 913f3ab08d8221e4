"""Model folder addresses: ``cos://<bucket>-<appid>.cos.<region>.myqcloud.com/<path>/`` and
``s3://<bucket>/<path>/``.

An address is never fetched as a URL: it is parsed into (bucket, key prefix) and those are read
through the configured storage endpoint only. Each malformed part gets its own message, so the
user knows what to fix. Django-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

COS_HOST_SUFFIX = ".myqcloud.com"

# COS bucket names: "<name>-<appid>", the whole at most 50 characters, lowercase letters,
# digits and hyphens. S3 names follow the same shape here so one rule covers both.
_BUCKET_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_APP_ID = re.compile(r"^[0-9]{1,20}$")
_REGION = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_BUCKET_LENGTH = 63
MAX_KEY_LENGTH = 850


class AddressError(ValueError):
    """A malformed or unacceptable address; ``part`` names what is wrong (scheme, host, bucket,
    app_id, region, path)."""

    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part
        self.message = message


@dataclass(frozen=True)
class ModelAddress:
    """A folder in a bucket. ``key`` is the key prefix, always ending in ``/`` (or, parsed with
    ``folder=False``, one object's key)."""

    scheme: str
    bucket: str
    key: str
    region: str | None = None

    @property
    def app_id(self) -> str | None:
        return bucket_app_id(self.bucket)

    @property
    def name(self) -> str:
        """The bucket's name without the ``-<appid>`` suffix."""
        app_id = self.app_id
        return self.bucket[: -len(app_id) - 1] if app_id else self.bucket

    def __str__(self) -> str:
        folder = self.key.endswith("/")
        if self.scheme == "cos":
            return build_cos_address(self.bucket, self.key, region=self.region or "", folder=folder)
        return build_s3_address(self.bucket, self.key, folder=folder)


def bucket_app_id(bucket: str) -> str | None:
    """The app id a bucket name ends in (``models-1250000000`` → ``1250000000``), if any."""
    head, sep, tail = bucket.rpartition("-")
    if sep and head and _APP_ID.match(tail):
        return tail
    return None


def check_bucket_name(bucket: str) -> None:
    if not bucket:
        raise AddressError("bucket", "The bucket name is empty.")
    if len(bucket) > MAX_BUCKET_LENGTH:
        raise AddressError(
            "bucket", f"The bucket name is {len(bucket)} characters; at most {MAX_BUCKET_LENGTH}."
        )
    if not _BUCKET_NAME.match(bucket) or "--" in bucket:
        raise AddressError(
            "bucket",
            f"The bucket name {bucket!r} may hold only lowercase letters, digits and single "
            "hyphens, and must start and end with a letter or digit.",
        )
    if bucket_app_id(bucket) is None:
        raise AddressError(
            "app_id",
            f"The bucket name {bucket!r} does not end in an app id: it must be "
            "<name>-<appid>, e.g. models-1250000000.",
        )


def check_region(region: str) -> None:
    if not _REGION.match(region):
        raise AddressError(
            "region", f"{region!r} is not a region name such as ap-beijing or ap-shanghai."
        )


def normalize_key(path: str, *, folder: bool = True) -> str:
    """Check a key prefix (no leading slash); with ``folder`` it must end in ``/``."""
    if _BAD_KEY_CHARS.search(path):
        raise AddressError("path", "The folder path holds a backslash or a control character.")
    if path.startswith("/"):
        raise AddressError("path", "The folder path has an empty segment (a double slash).")
    if not path:
        raise AddressError(
            "path", "The address names the bucket itself; add the model folder, e.g. .../model/."
        )
    if folder and not path.endswith("/"):
        raise AddressError(
            "path",
            f"{path!r} names a file, not a folder: a model folder address ends in '/'.",
        )
    segments = path.rstrip("/").split("/")
    if any(segment == "" for segment in segments):
        raise AddressError("path", "The folder path has an empty segment (a double slash).")
    if any(segment in {".", ".."} for segment in segments):
        raise AddressError("path", "The folder path may not contain '.' or '..' segments.")
    if len(path.encode()) > MAX_KEY_LENGTH:
        raise AddressError("path", f"The folder path is longer than {MAX_KEY_LENGTH} bytes.")
    return path


def _split(text: str, scheme: str) -> tuple[str, str]:
    rest = text[len(scheme) + 3 :]
    if "?" in rest or "#" in rest:
        raise AddressError("path", "An address has no query string or fragment ('?' or '#').")
    host, slash, path = rest.partition("/")
    if not slash:
        raise AddressError(
            "path", "The address names no folder: add '/<folder path>/' after the bucket."
        )
    if "@" in host:
        raise AddressError("host", "An address carries no user name or password ('@').")
    if ":" in host:
        raise AddressError("host", "An address carries no port; the endpoint is configured.")
    return host, unquote(path)


def parse_address(text: str, *, folder: bool = True) -> ModelAddress:
    """Parse a typed address; raises ``AddressError`` naming the malformed part. With
    ``folder=False`` the address may also name a file (a batch job's input)."""
    text = (text or "").strip()
    if not text:
        raise AddressError("scheme", "The address is empty.")
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise AddressError(
            "scheme",
            "The address must start with cos:// or s3://, e.g. "
            "cos://models-1250000000.cos.ap-beijing.myqcloud.com/my-model/.",
        )
    if scheme in {"http", "https", "ftp", "file"}:
        raise AddressError(
            "scheme",
            f"{scheme}:// addresses are not accepted: the portal never fetches a typed URL. "
            "Give the folder as cos://<bucket>-<appid>.cos.<region>.myqcloud.com/<path>/.",
        )
    if scheme not in {"cos", "s3"}:
        raise AddressError("scheme", f"Unknown scheme {scheme!r}: use cos:// or s3://.")
    host, path = _split(text, scheme)
    host = host.lower()
    if scheme == "s3":
        check_bucket_name(host)
        return ModelAddress("s3", host, normalize_key(path, folder=folder))
    if not host.endswith(COS_HOST_SUFFIX):
        raise AddressError(
            "host",
            f"The host {host!r} is not a COS bucket host "
            "(<bucket>-<appid>.cos.<region>.myqcloud.com).",
        )
    parts = host[: -len(COS_HOST_SUFFIX)].split(".")
    if len(parts) != 3 or parts[1] != "cos":
        raise AddressError(
            "host",
            f"The host {host!r} must be <bucket>-<appid>.cos.<region>.myqcloud.com.",
        )
    bucket, _, region = parts
    check_bucket_name(bucket)
    check_region(region)
    return ModelAddress("cos", bucket, normalize_key(path, folder=folder), region)


def check_address(address: ModelAddress, *, app_id: str, region: str | None) -> None:
    """The tenant-level rules: the bucket is the tenant's and in the config's region."""
    if address.app_id != str(app_id):
        raise AddressError(
            "app_id",
            f"The bucket {address.bucket} belongs to app id {address.app_id}, not to this "
            f"account ({app_id}).",
        )
    if region and address.region and address.region != region:
        raise AddressError(
            "region",
            f"The bucket is in {address.region} but the config is in {region}.",
        )


def build_cos_address(bucket: str, key: str, *, region: str, folder: bool = True) -> str:
    check_bucket_name(bucket)
    check_region(region)
    return f"cos://{bucket}.cos.{region}{COS_HOST_SUFFIX}/{normalize_key(key, folder=folder)}"


def build_s3_address(bucket: str, key: str, *, folder: bool = True) -> str:
    check_bucket_name(bucket)
    return f"s3://{bucket}/{normalize_key(key, folder=folder)}"
