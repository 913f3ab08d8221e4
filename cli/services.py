"""``ems deploy``, ``ems services …`` and ``ems predict``."""

from __future__ import annotations

import json
import sys
import time

import click
import requests

from cli import client, resolve
from cli.client import Api, CliError
from cli.main import cli, output_option
from cli.output import emit, err, note

SERVICE_COLUMNS = [
    ("service_id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("revision.version", "VERSION"),
    ("runtime", "RUNTIME"),
    ("replicas", "REPLICAS"),
    ("instances_ready", "READY"),
    ("scaling_mode", "SCALING"),
]
# What a --wait waits for, per command.
SETTLED = {"run": ("Normal",), "stop": ("Stopped",)}
FAILED_STATES = ("Failed", "Abnormal")


def wait_for(api: Api, service_id: str, goal: str, timeout: float) -> dict:
    """Poll until the service reaches ``goal`` (all replicas ready when running); Failed ends
    it with the service's own message; past ``timeout`` exit 6."""
    deadline = time.monotonic() + timeout
    with err.status(f"waiting for {service_id} …") as spinner:
        while True:
            svc = api.get(f"services/{service_id}/")
            spinner.update(
                f"{service_id}: {svc['status']} ({svc['instances_ready']}/{svc['replicas']} ready)"
            )
            ready = svc["instances_ready"] >= max(svc["replicas"], 1)
            if svc["status"] in SETTLED[goal] and (goal == "stop" or ready):
                return svc
            if svc["status"] == "Failed":
                raise CliError(
                    f"{service_id} failed: {svc.get('message') or 'see ems services events'}"
                )
            if time.monotonic() > deadline:
                raise CliError(
                    f"{service_id} is {svc['status']} after {timeout:.0f} s "
                    f"({svc['instances_ready']}/{svc['replicas']} ready)",
                    client.TIMED_OUT,
                )
            time.sleep(1.0)


def _wait_options(func):
    func = click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")(
        func
    )
    return click.option("--wait", is_flag=True, help="Wait until it has settled.")(func)


def _size_body(quota_type, quota_count, cpu, memory, gpus) -> dict:
    if cpu or memory or gpus:
        return {"cpu_millicores": cpu, "memory_mib": memory, "gpus": gpus}
    return {"quota_type": quota_type, "quota_count": quota_count}


def _triggers(values: tuple[str, ...]) -> list[dict]:
    triggers = []
    for value in values:
        metric, _, target = value.partition("=")
        if not target.isdigit():
            raise click.BadParameter(f"{value!r}: write METRIC=TARGET, e.g. cpu=60", "--trigger")
        triggers.append({"metric": metric, "target": int(target)})
    return triggers


@cli.command()
@click.argument("config_ref", metavar="CONFIG[:VERSION]")
@click.option("--name", help="Service name (default: the config's name).")
@click.option("--group", "group_ref", help="Resource group name or id (default: public).")
@click.option("--quota-type", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True)
@click.option("--quota-count", default=1, show_default=True, help="Quota units per instance.")
@click.option("--cpu", default=0, help="Dedicated groups: millicores per instance.")
@click.option("--memory", default=0, help="Dedicated groups: MiB per instance.")
@click.option("--gpus", default=0, help="Dedicated groups: GPUs per instance.")
@click.option("--replicas", default=1, show_default=True, help="Manual scaling: instances.")
@click.option("--auto", "auto", is_flag=True, help="Automatic scaling (with --min/--max).")
@click.option("--min", "min_", default=1, show_default=True)
@click.option("--max", "max_", default=1, show_default=True)
@click.option("--start", default=None, type=int, help="Start replicas (default: --min).")
@click.option("--trigger", multiple=True, help="METRIC=TARGET, e.g. cpu=60 (repeatable).")
@click.option("--auth/--no-auth", default=True, show_default=True, help="Token on the endpoint.")
@_wait_options
@output_option
def deploy(config_ref, name, group_ref, quota_type, quota_count, cpu, memory, gpus, replicas,
           auto, min_, max_, start, trigger, auth, wait, timeout, output):  # fmt: skip
    """Start an online service from CONFIG (its newest version, or CONFIG:2.0)."""
    api = Api.from_login()
    cfg, version = resolve.config_version(api, config_ref)
    group = resolve.group(api, group_ref, cfg["region"])
    body = {
        "name": name or cfg["name"],
        "version": version["id"],
        "resource_group": group["id"],
        "auth_enabled": auth,
        **_size_body(quota_type, quota_count, cpu, memory, gpus),
    }
    if auto:
        body |= {
            "scaling_mode": "auto",
            "min_replicas": min_,
            "max_replicas": max_,
            "start_replicas": start or min_,
            "triggers": _triggers(trigger),
        }
    else:
        body |= {"scaling_mode": "manual", "replicas": replicas}
    svc = api.post("services/", body)
    note(f"Deploying {svc['service_id']} ({cfg['name']} {version['version']} on {group['name']})")
    if wait:
        svc = wait_for(api, svc["service_id"], "run", timeout)
    emit(svc, output, SERVICE_COLUMNS)


@cli.group()
def services():
    """Online inference services."""


@services.command("list")
@output_option
def services_list(output):
    emit(Api.from_login().all("services/"), output, SERVICE_COLUMNS)


@services.command("get")
@click.argument("service")
@output_option
def services_get(service, output):
    """One service (id or name)."""
    emit(
        resolve.service(Api.from_login(), service),
        output,
        [*SERVICE_COLUMNS, ("message", "MESSAGE")],
    )


def _act(service_ref, path, body, goal, wait, timeout, output):
    api = Api.from_login()
    svc = resolve.service(api, service_ref)
    svc = api.post(f"services/{svc['service_id']}/{path}/", body)
    if wait:
        svc = wait_for(api, svc["service_id"], goal, timeout)
    emit(svc, output, SERVICE_COLUMNS)


@services.command("stop")
@click.argument("service")
@_wait_options
@output_option
def services_stop(service, wait, timeout, output):
    """Stop every instance (billing stops; the config and token stay)."""
    _act(service, "stop", None, "stop", wait, timeout, output)


@services.command("resume")
@click.argument("service")
@_wait_options
@output_option
def services_resume(service, wait, timeout, output):
    """Start a stopped service with the replicas it had."""
    _act(service, "resume", None, "run", wait, timeout, output)


@services.command("scale")
@click.argument("service")
@click.argument("replicas", type=click.IntRange(min=1))
@_wait_options
@output_option
def services_scale(service, replicas, wait, timeout, output):
    """Set the instance count of a manually scaled service."""
    _act(service, "scale", {"replicas": replicas}, "run", wait, timeout, output)


@services.command("update")
@click.argument("service")
@click.argument("version")
@_wait_options
@output_option
def services_update(service, version, wait, timeout, output):
    """Roll SERVICE to another VERSION (e.g. 2.0) of its config, one instance at a time."""
    api = Api.from_login()
    svc = resolve.service(api, service)
    target = resolve.version(api, resolve.config(api, str(svc["config"])), version)
    _act(service, "update", {"version": target["id"]}, "run", wait, timeout, output)


@services.command("rollback")
@click.argument("service")
@_wait_options
@output_option
def services_rollback(service, wait, timeout, output):
    """Back to the version served before the last update."""
    _act(service, "rollback", None, "run", wait, timeout, output)


@services.command("delete")
@click.argument("service")
@click.option("--yes", is_flag=True, help="Do not ask.")
def services_delete(service, yes):
    """Stop and delete SERVICE."""
    api = Api.from_login()
    svc = resolve.service(api, service)
    if not yes:
        click.confirm(f"Delete {svc['service_id']} ({svc['name']})?", abort=True)
    api.delete(f"services/{svc['service_id']}/")
    note(f"Deleted {svc['service_id']}.")


@services.command("invoke")
@click.argument("service")
@output_option
def services_invoke(service, output):
    """Its address, token (when you may see it) and the curl line."""
    api = Api.from_login()
    svc = resolve.service(api, service)
    info = api.get(f"services/{svc['service_id']}/invoke/")
    emit(info, output, [("predict_url", "predict_url"), ("token", "token"), ("curl", "curl")])


@services.command("events")
@click.argument("service")
@output_option
def services_events(service, output):
    api = Api.from_login()
    svc = resolve.service(api, service)
    rows = api.get(f"services/{svc['service_id']}/events/").get("results", [])
    emit(rows, output, [("created_at", "WHEN"), ("level", "LEVEL"), ("message", "MESSAGE")])


def _read_data(data: str) -> bytes:
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise CliError(f"Cannot read {data[1:]}: {exc.strerror}", client.REFUSED) from exc
    return data.encode()


@cli.command()
@click.argument("service")
@click.option("-d", "--data", required=True, help="JSON body, @file.json, or @- for stdin.")
@click.option("--verb", type=click.Choice(["predict", "classify", "regress"]), default="predict")
@click.option("--token", envvar="EMS_SERVICE_TOKEN", help="Default: the service's own token.")
def predict(service, data, verb, token):
    """Send a TF-Serving request to SERVICE through the gateway; print the answer."""
    body = _read_data(data)
    try:
        json.loads(body)
    except ValueError as exc:
        raise CliError(f"The request body is not JSON: {exc}", client.REFUSED) from exc
    api = Api.from_login()
    svc = resolve.service(api, service)
    info = api.get(f"services/{svc['service_id']}/invoke/")
    if info["auth_enabled"] and not (token or info.get("token")):
        raise CliError("This service needs a token you may not see; pass --token.", client.DENIED)
    url = info["predict_url"].rsplit(":", 1)[0] + f":{verb}"
    headers = {"Content-Type": "application/json"}
    if info["auth_enabled"]:
        headers["x-Auth-Token"] = token or info["token"]
    try:
        response = requests.post(url, data=body, headers=headers, timeout=120)
    except requests.RequestException as exc:
        raise CliError(
            f"Cannot reach {url}: {exc.__class__.__name__}", client.UNREACHABLE
        ) from None
    client.raise_for(response)
    sys.stdout.write(response.text.rstrip("\n") + "\n")
