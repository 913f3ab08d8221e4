"""``ems jobs …``: batch jobs (a config version run over object-store input)."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli import client, resolve
from cli.client import Api, CliError
from cli.main import cli, output_option
from cli.output import emit, err, note

JOB_COLUMNS = [
    ("job_id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("done", "DONE"),
    ("total", "TOTAL"),
    ("failed", "FAILED"),
    ("version_label", "VERSION"),
    ("created_at", "CREATED"),
]
DETAIL_COLUMNS = [
    *JOB_COLUMNS[:-1],
    ("percent", "PERCENT"),
    ("rate", "RATE"),
    ("eta_seconds", "ETA_S"),
    ("input", "INPUT"),
    ("output", "OUTPUT"),
    ("message", "MESSAGE"),
    ("errors", "ERRORS"),
    ("created_at", "CREATED"),
    ("started_at", "STARTED"),
    ("ended_at", "ENDED"),
]
ENDED = ("Succeeded", "Failed", "Cancelled")


def _line(row: dict) -> str:
    text = f"{row['status']}"
    if row.get("failed"):
        text += f", {row['failed']} failed"
    if row.get("rate"):
        text += f", {row['rate']:.1f}/s"
    return text


def wait_for(api: Api, job_id: str, timeout: float, *, poll: float = 1.0) -> dict:
    """A progress bar (done of total lines) until the job ends; past ``timeout`` exit 6."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[line]}"),
        console=err,
        transient=not err.is_terminal,
    ) as progress:
        task = progress.add_task(job_id, total=None, line="")
        while True:
            row = api.get(f"jobs/{job_id}/")
            progress.update(
                task, total=row.get("total") or None, completed=row.get("done", 0), line=_line(row)
            )
            if row["status"] in ENDED:
                return row
            if time.monotonic() > deadline:
                raise CliError(
                    f"{job_id} is {row['status']} ({row.get('done', 0)}/{row.get('total', 0)}) "
                    f"after {timeout:.0f} s",
                    client.TIMED_OUT,
                )
            time.sleep(poll)


def finish(row: dict, output: str) -> None:
    """Print the job; a job that ended Failed or Cancelled exits 1 (scripts can tell)."""
    emit(row, output, DETAIL_COLUMNS)
    if row["status"] in ("Failed", "Cancelled"):
        raise CliError(f"{row['job_id']} ended {row['status']}: {row.get('message') or '-'}")


def _wait_options(func):
    func = click.option(
        "--timeout", default=3600.0, show_default=True, help="Seconds to wait at most."
    )(func)
    return click.option("--wait", is_flag=True, help="Wait (with a progress bar) until it ends.")(
        func
    )


@cli.group()
def jobs():
    """Batch jobs: run a config version over cos:// input, predictions written back."""


@jobs.command("list")
@output_option
def jobs_list(output):
    emit(Api.from_login().all("jobs/"), output, JOB_COLUMNS)


@jobs.command("get")
@click.argument("job_ref", metavar="JOB")
@click.option("--watch", is_flag=True, help="Follow its progress until it ends.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to watch at most.")
@output_option
def jobs_get(job_ref, watch, timeout, output):
    """One job (id or name): status, progress, rate, time left, errors."""
    api = Api.from_login()
    row = resolve.job(api, job_ref)
    if watch and row["status"] not in ENDED:
        row = wait_for(api, row["job_id"], timeout)
    emit(row, output, DETAIL_COLUMNS)


@jobs.command("wait")
@click.argument("job_ref", metavar="JOB")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait at most.")
@output_option
def jobs_wait(job_ref, timeout, output):
    """Wait until JOB ends: exit 0 Succeeded, 1 Failed or Cancelled, 6 out of time."""
    api = Api.from_login()
    row = resolve.job(api, job_ref)
    if row["status"] not in ENDED:
        row = wait_for(api, row["job_id"], timeout)
    finish(row, output)


@jobs.command("create")
@click.argument("config_ref", metavar="CONFIG[:VERSION]")
@click.option("--input", "input_", required=True, help="cos:// file or folder of JSON Lines.")
@click.option(
    "--output-folder", "output_folder", required=True, help="cos:// folder for the results."
)
@click.option("--name", help="Job name (default: the config's name).")
@click.option("--group", "group_ref", help="Resource group name or id (default: public).")
@click.option("--quota-type", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--quota-count", default=1, show_default=True, help="Quota units per instance.")
@click.option("--cpu", default=0, help="Dedicated groups: millicores per instance.")
@click.option("--memory", default=0, help="Dedicated groups: MiB per instance.")
@click.option("--gpus", default=0, help="Dedicated groups: GPUs per instance.")
@click.option("--workers", default=1, show_default=True, help="Instances running the job.")
@click.option("--batch-size", default=64, show_default=True, help="Lines per :predict call.")
@click.option("--signature", default="", help="Signature name (default: the model's).")
@click.option("--max-failed", default=0, show_default=True, help="Failed lines tolerated.")
@_wait_options
@output_option
def jobs_create(config_ref, input_, output_folder, name, group_ref, quota_type, quota_count, cpu,
                memory, gpus, workers, batch_size, signature, max_failed, wait, timeout,
                output):  # fmt: skip
    """Start a batch job of CONFIG (its newest version, or CONFIG:2.0) over --input."""
    from cli.services import _size_body

    api = Api.from_login()
    cfg, version = resolve.config_version(api, config_ref)
    group = resolve.group(api, group_ref, cfg["region"])
    body = {
        "name": name or cfg["name"],
        "version": version["id"],
        "resource_group": group["id"],
        "workers": workers,
        "input": input_,
        "output": output_folder,
        "batch_size": batch_size,
        "max_failed": max_failed,
        **_size_body(quota_type, quota_count, cpu, memory, gpus),
    }
    if signature:
        body["signature_name"] = signature
    row = api.post("jobs/", body)
    note(f"Started {row['job_id']} ({cfg['name']} {version['version']} on {group['name']})")
    if wait:
        finish(wait_for(api, row["job_id"], timeout), output)
        return
    emit(row, output, DETAIL_COLUMNS)


@jobs.command("cancel")
@click.argument("job_ref", metavar="JOB")
@_wait_options
@output_option
def jobs_cancel(job_ref, wait, timeout, output):
    """Stop JOB's instances; what it wrote stays in the output folder."""
    api = Api.from_login()
    row = resolve.job(api, job_ref)
    row = api.post(f"jobs/{row['job_id']}/cancel/", {})
    if wait and row["status"] not in ENDED:
        row = wait_for(api, row["job_id"], timeout)
    emit(row, output, DETAIL_COLUMNS)
