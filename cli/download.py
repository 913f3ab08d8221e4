"""``ems download``: one object of a bucket to a file (or stdout), streamed with a progress bar."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click
import requests
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from cli import client
from cli.client import Api, CliError
from cli.main import cli
from cli.output import err, note

CHUNK = 256 * 1024


def split_object_address(address: str) -> tuple[str, str]:
    """``cos://<bucket>-<appid>.cos.<region>.myqcloud.com/<key>`` or ``s3://<bucket>/<key>`` →
    (bucket, key). The server checks the rest (the bucket is yours, the key is a file)."""
    parts = urlsplit(address)
    if parts.scheme == "cos":
        bucket = parts.netloc.split(".cos.", 1)[0] if ".cos." in parts.netloc else ""
    elif parts.scheme == "s3":
        bucket = parts.netloc
    else:
        raise CliError(
            f"{address!r} is not an object address: write cos://<bucket>-<appid>.cos."
            "<region>.myqcloud.com/<key> or s3://<bucket>/<key>.",
            client.REFUSED,
        )
    key = unquote(parts.path.lstrip("/"))
    if not bucket or not key or key.endswith("/"):
        raise CliError(
            f"{address!r} names no file: give the bucket and the file's key.", client.REFUSED
        )
    return bucket, key


def download_object(api: Api, bucket: str, key: str, target: str | None) -> Path | None:
    """Stream BUCKET/KEY to ``target`` (default: the key's file name here; ``-``: stdout).
    A file is written beside the target and renamed, so a failed download leaves nothing."""
    try:
        response = api.session.get(
            api.base + f"buckets/{bucket}/download/",
            params={"key": key},
            stream=True,
            timeout=api.timeout,
        )
    except requests.RequestException as exc:
        raise CliError(
            f"Cannot reach {api.base}: {exc.__class__.__name__}", client.UNREACHABLE
        ) from None
    with response:
        client.raise_for(response)
        total = int(response.headers.get("Content-Length") or 0) or None
        if target == "-":
            for chunk in response.iter_content(CHUNK):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return None
        path = Path(target or key.rsplit("/", 1)[-1])
        if path.is_dir():
            path = path / key.rsplit("/", 1)[-1]
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        try:
            with (
                os.fdopen(fd, "wb") as sink,
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    console=err,
                    transient=True,
                ) as progress,
            ):
                task = progress.add_task(f"{bucket}/{key}", total=total)
                for chunk in response.iter_content(CHUNK):
                    sink.write(chunk)
                    progress.advance(task, len(chunk))
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return path


@cli.command()
@click.argument("address", metavar="cos://BUCKET.cos.REGION.myqcloud.com/KEY")
@click.option(
    "-o", "--out", "target", help="File or folder to write (default: the key's name; - stdout)."
)
def download(address, target):
    """Download one file of your buckets (a job's output, a model file)."""
    bucket, key = split_object_address(address)
    path = download_object(Api.from_login(), bucket, key, target)
    if path is not None:
        note(f"Saved {bucket}/{key} to {path} ({path.stat().st_size} bytes).")
