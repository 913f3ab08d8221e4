"""``ems buckets …`` and ``ems configs …``: storage and model service configs."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from cli import resolve
from cli.client import Api, CliError
from cli.main import cli, output_option
from cli.output import emit, err, note
from cli.upload import MultipartBody, folder_files

CONFIG_COLUMNS = [("id", "ID"), ("name", "NAME"), ("region", "REGION"), ("latest", "LATEST")]
VERSION_COLUMNS = [
    ("id", "ID"),
    ("version", "VERSION"),
    ("runtime_name", "RUNTIME"),
    ("address", "ADDRESS"),
    ("validation_status", "VALID"),
]


@cli.group()
def buckets():
    """Your object-storage buckets (<name>-<app id>)."""


@buckets.command("list")
@output_option
def buckets_list(output):
    emit(Api.from_login().all("buckets/"), output, [("name", "NAME"), ("region", "REGION")])


@buckets.command("create")
@click.argument("name")
@click.option("--region", required=True, help="e.g. ap-guangzhou")
@output_option
def buckets_create(name, region, output):
    """Create NAME-<app id> in REGION."""
    emit(Api.from_login().post("buckets/", {"name": name, "region": region}), output)


@buckets.command("ls")
@click.argument("bucket")
@click.argument("prefix", default="")
@output_option
def buckets_ls(bucket, prefix, output):
    """Folders and objects under PREFIX."""
    page = Api.from_login().get(f"buckets/{bucket}/objects/", prefix=prefix)
    rows = [{"key": f, "size": "", "modified": ""} for f in page["folders"]] + page["objects"]
    emit(rows if output == "table" else page, output, [("key", "KEY"), ("size", "SIZE")])


def upload_folder(api: Api, bucket: str, folder: Path, prefix: str) -> dict:
    """Stream FOLDER into BUCKET/PREFIX with a progress bar; answer the upload result."""
    body = MultipartBody(prefix, folder_files(folder))
    size = len(body)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{folder.name} → {bucket}/{prefix}", total=size)
        body.on_progress = lambda n: progress.advance(task, n)
        result = api.request(
            "POST",
            f"buckets/{bucket}/upload/",
            data=body,  # sized and iterable: sent with its Content-Length, streamed
            headers={"Content-Type": body.content_type},
            timeout=max(api.timeout, 600),
        )
    note(f"Uploaded {len(result['files'])} files to {result['address']}")
    return result


@buckets.command("upload")
@click.argument("bucket")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prefix", help="Folder in the bucket (default: the folder's name).")
@output_option
def buckets_upload(bucket, folder, prefix, output):
    """Upload a local FOLDER (its files and subfolders) into BUCKET."""
    result = upload_folder(Api.from_login(), bucket, folder, _prefix(prefix, folder))
    emit(result, output, [("bucket", "bucket"), ("prefix", "prefix"), ("address", "address")])


def _prefix(prefix: str | None, folder: Path) -> str:
    value = (prefix or folder.resolve().name).strip("/")
    return value + "/"


@cli.group()
def configs():
    """Model service configs and their versions (1.0, 2.0, …)."""


def _summary(cfg: dict) -> dict:
    versions = cfg.get("versions") or []
    latest = max(versions, key=lambda v: v["number"])["version"] if versions else None
    return {**cfg, "latest": latest}


@configs.command("list")
@output_option
def configs_list(output):
    rows = [_summary(c) for c in Api.from_login().all("model-configs/")]
    emit(rows, output, CONFIG_COLUMNS)


@configs.command("get")
@click.argument("config")
@output_option
def configs_get(config, output):
    """One config (name or id) with its versions."""
    cfg = resolve.config(Api.from_login(), config)
    if output == "json":
        emit(cfg, output)
        return
    emit(_summary(cfg), output, [*CONFIG_COLUMNS, ("description", "DESCRIPTION")])
    emit(cfg["versions"], output, VERSION_COLUMNS)


def _source(api: Api, *, upload, address, bucket, prefix) -> dict:
    if bool(upload) == bool(address):
        raise click.UsageError("Give exactly one of --upload DIR and --address cos://….")
    if address:
        return {"address": address}
    if not bucket:
        raise click.UsageError("--upload needs --bucket (see `ems buckets list`).")
    result = upload_folder(api, bucket, upload, _prefix(prefix, upload))
    return {"bucket": result["bucket"], "prefix": result["prefix"]}


def _source_options(func):
    func = click.option(
        "--prefix", help="With --upload: folder in the bucket (default: DIR's name)."
    )(func)
    func = click.option("--bucket", help="With --upload: the bucket to upload into.")(func)
    func = click.option("--address", help="cos://<bucket>-<appid>.cos.<region>.myqcloud.com/…/")(
        func
    )
    return click.option(
        "--upload",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="A local model folder to upload first.",
    )(func)


@configs.command("create")
@click.argument("name")
@click.option("--runtime", "runtime_ref", required=True, help="tfserving, pmml, openvino, …")
@click.option("--region", help="Default: the bucket's region.")
@click.option("--description", default="")
@_source_options
@output_option
def configs_create(name, runtime_ref, region, description, upload, address, bucket, prefix, output):
    """Create config NAME (version 1.0) from an uploaded folder or a cos:// address."""
    api = Api.from_login()
    runtime = resolve.runtime(api, runtime_ref)
    source = _source(api, upload=upload, address=address, bucket=bucket, prefix=prefix)
    region = region or _region_of(api, bucket, address)
    body = {"name": name, "region": region, "runtime": runtime["id"], **source}
    if description:
        body["description"] = description
    cfg = api.post("model-configs/", body)
    emit(cfg if output == "json" else _summary(cfg), output, CONFIG_COLUMNS)


def _region_of(api: Api, bucket: str | None, address: str | None) -> str:
    if address and ".cos." in address:
        return address.split(".cos.", 1)[1].split(".", 1)[0]
    for row in api.all("buckets/"):
        if row["name"] == bucket and row.get("region"):
            return row["region"]
    raise CliError("Cannot tell the region; pass --region.", 5)


@configs.command("version")
@click.argument("config")
@click.option("--runtime", "runtime_ref", help="Default: the latest version's runtime.")
@_source_options
@output_option
def configs_version(config, runtime_ref, upload, address, bucket, prefix, output):
    """Add the next version (2.0, 3.0, …) to CONFIG from a folder."""
    api = Api.from_login()
    cfg = resolve.config(api, config)
    runtime_id = (
        resolve.runtime(api, runtime_ref)["id"]
        if runtime_ref
        else resolve.version(api, cfg, None)["runtime"]
    )
    source = _source(api, upload=upload, address=address, bucket=bucket, prefix=prefix)
    version = api.post(f"model-configs/{cfg['id']}/versions/", {"runtime": runtime_id, **source})
    emit(version, output, VERSION_COLUMNS)


@configs.command("delete")
@click.argument("config")
@click.option("--yes", is_flag=True, help="Do not ask.")
def configs_delete(config, yes):
    """Delete CONFIG (refused while a service uses one of its versions)."""
    api = Api.from_login()
    cfg = resolve.config(api, config)
    if not yes:
        click.confirm(f"Delete config {cfg['name']} and its versions?", abort=True)
    api.delete(f"model-configs/{cfg['id']}/")
    note(f"Deleted config {cfg['name']}.")
