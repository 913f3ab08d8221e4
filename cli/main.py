"""``ems``: the portal from a terminal or a script, over the REST API.

Every command prints a table (or ``--output json``), writes messages to stderr, and exits with a
code from :data:`cli.client.EXIT_CODES`."""

from __future__ import annotations

import functools
import getpass
import platform
import sys

import click
import requests

from cli import client
from cli.client import Api, CliError, Login
from cli.output import emit, note


def output_option(func):
    """``--output table|json`` on every command (``EMS_OUTPUT`` sets the default)."""

    @click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        envvar="EMS_OUTPUT",
        default="table",
        show_default=True,
        help="Human table, or JSON for scripts.",
    )
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


class Group(click.Group):
    """Turns a :class:`CliError` into one line on stderr and its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CliError as exc:
            click.echo(f"ems: {exc.message}", err=True)
            ctx.exit(exc.code)
        except ValueError as exc:
            click.echo(f"ems: {exc}", err=True)
            ctx.exit(client.REFUSED)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="ems")
def cli():
    """EMS Portal from the command line: model configs, services, predictions.

    Start with `ems login --url http://127.0.0.1:8000 --username NAME`.
    Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 denied, 5 refused,
    6 timed out, 7 unreachable, 8 throttled."""


@cli.command()
@click.option("--url", required=True, envvar="EMS_URL", help="The portal, e.g. http://host:8000")
@click.option("--username", required=True, help="Main account name, or APPID/subname.")
@click.option("--email", required=True)
@click.option("--tenant-name", default="")
@click.password_option(envvar="EMS_PASSWORD", help="Prompted (twice) when not given.")
@output_option
def signup(url, username, email, tenant_name, password, output):
    """Create a tenant and its main account."""
    body = {"username": username, "email": email, "password": password}
    if tenant_name:
        body["tenant_name"] = tenant_name
    result = Api(url).post("auth/signup/", body)
    emit(result, output)
    note(f"Signed up. Next: ems login --url {url} --username {username}")


@cli.command()
@click.option("--url", required=True, envvar="EMS_URL", help="The portal, e.g. http://host:8000")
@click.option("--username", help="Your account; a new API key is made with your password.")
@click.option("--password", envvar="EMS_PASSWORD", help="Prompted when not given.")
@click.option("--api-key", envvar="EMS_API_KEY", help="Use an existing key instead.")
def login(url, username, password, api_key):
    """Save an API key for URL in ~/.config/ems/config.json (mode 0600)."""
    url = url.rstrip("/")
    if not api_key:
        if not username:
            raise click.UsageError("Give --username (a key is created) or --api-key.")
        password = password or getpass.getpass(f"Password for {username}: ")
        api = Api(url, auth=requests.auth.HTTPBasicAuth(username, password))
        name = f"ems-cli@{platform.node()}"[:60]
        api_key = api.post("auth/api-keys/", {"name": name})["key"]
    status = Api(url, api_key=api_key).get("service-role/")
    path = Login(url=url, api_key=api_key, username=username or "").save()
    note(f"Logged in to {url}; key saved in {path}.")
    if not status.get("authorized"):
        note("The service role is not authorized yet: run `ems role authorize`.")


@cli.command()
def logout():
    """Delete the saved key here and on the server."""
    login_ = Login.load()
    api = Api(login_.url, api_key=login_.api_key)
    prefix = login_.api_key[:8]
    for key in api.all("auth/api-keys/"):
        if login_.api_key.startswith(key.get("prefix") or "\0"):
            api.delete(f"auth/api-keys/{key['id']}/")
    client.config_path().unlink(missing_ok=True)
    note(f"Logged out (key {prefix}… revoked).")


@cli.group()
def role():
    """The service role (EMS_ServiceRole) the platform needs to read your storage."""


@role.command("status")
@output_option
def role_status(output):
    emit(Api.from_login().get("service-role/"), output)


@role.command("authorize")
@output_option
def role_authorize(output):
    """Authorize EMS_ServiceRole for your tenant (main account, or EMSAuthorizeRole)."""
    emit(Api.from_login().post("service-role/authorize/", {}), output)


def _list_command(group, name, path, columns, help_text):
    @group.command(name, help=help_text)
    @output_option
    def command(output):
        emit(Api.from_login().all(path), output, columns)

    return command


@cli.group()
def regions():
    """Regions."""


@cli.group()
def runtimes():
    """Runtime environments (TF-Serving, PMML, TensorRT, OpenVINO, Angel, custom)."""


@cli.group()
def groups():
    """Resource groups (public quota, or dedicated)."""


_list_command(
    regions, "list", "regions/", [("name", "NAME"), ("display_name", "DISPLAY")], "List regions."
)
_list_command(
    runtimes,
    "list",
    "runtimes/",
    [("id", "ID"), ("name", "NAME"), ("runtime", "KIND"), ("model_format", "FORMAT")],
    "List runtime environments.",
)
_list_command(
    groups,
    "list",
    "resource-groups/",
    [("id", "ID"), ("name", "NAME"), ("kind", "KIND"), ("region", "REGION"), ("capacity", "FREE")],
    "List resource groups and their free capacity.",
)


def main() -> None:
    from cli import download, jobs, models, services, usage  # noqa: F401 - they add commands

    cli.main(prog_name="ems")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
