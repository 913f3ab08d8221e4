"""``ems usage list`` and ``ems usage export``: metered usage and the month's bill as a file,
over the billing API (``usage/``, ``bills/{month}/export/``; docs/billing.md)."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import click
import requests

from cli import client
from cli.client import Api, CliError, raise_for
from cli.main import cli, output_option
from cli.output import emit, note

USAGE_COLUMNS = [
    ("service_id", "SERVICE"),
    ("instance_id", "INSTANCE"),
    ("window_start", "FROM"),
    ("seconds", "SECONDS"),
    ("quota_type", "QUOTA"),
    ("quota_count", "COUNT"),
    ("unit_price_per_hour", "PRICE/H"),
    ("amount", "AMOUNT"),
    ("currency", "CUR"),
]


def _month(value: str | None) -> str:
    """YYYY-MM, checked here so a typo is a usage error (exit 2), not a server round trip;
    the current month (UTC, the bill's month to date) when not given."""
    if value is None:
        return f"{dt.datetime.now(dt.UTC):%Y-%m}"
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise click.BadParameter(f"{value!r} is not a month: write YYYY-MM, e.g. 2026-03.")
    return value


@cli.group()
def usage():
    """Metered usage and bill exports (CSV or XLSX)."""


@usage.command("list")
@click.option("--month", help="YYYY-MM (default: this month).")
@click.option("--service", help="Only this service (ems-…).")
@output_option
def usage_list(month, service, output):
    """Usage rows (one per instance and meter window) and the month's total."""
    month = _month(month)
    params = {"month": month}
    if service:
        params["service"] = service
    api = Api.from_login()
    rows = api.all("usage/", **params)
    emit(rows, output, USAGE_COLUMNS)
    if output == "table" and rows:
        total = sum(float(r["amount"]) for r in rows)
        note(f"{len(rows)} rows, {total:.2f} {rows[0]['currency']} in {month}")


@usage.command("export")
@click.option("--month", help="YYYY-MM (default: this month, to date).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    default="csv",
    show_default=True,
    help="csv: one table; xlsx: a Bill and a Usage sheet.",
)
@click.option(
    "--kind",
    type=click.Choice(["bill", "usage"]),
    default="bill",
    show_default=True,
    help="csv only: the bill's lines, or the usage rows.",
)
@click.option(
    "-o",
    "--out",
    "out",
    help="File to write ('-' for stdout); default bill-YYYY-MM.csv / usage-… / bill-usage-….xlsx.",
)
def usage_export(month, fmt, kind, out):
    """Download the month's bill (and usage) as CSV or XLSX; prints the file's path."""
    month = _month(month)
    if fmt == "xlsx" and kind != "bill":
        raise click.BadParameter("xlsx holds both sheets: leave --kind out.", param_hint="--kind")
    api = Api.from_login()
    link = api.get(f"bills/{month}/export/", format=fmt, kind=kind)
    # the portal's own file over the API (the key goes along), or a presigned object-storage
    # link, which needs no key and must not get one
    url = link.get("api_url") or link["url"]
    get = api.session.get if link.get("api_url") else requests.get
    try:
        response = get(url, timeout=api.timeout, stream=True)
    except OSError as exc:
        raise CliError(
            f"Cannot download {url}: {exc.__class__.__name__}", client.UNREACHABLE
        ) from None
    raise_for(response)
    name = out or (f"{kind}-{month}.csv" if fmt == "csv" else f"bill-usage-{month}.xlsx")
    if name == "-":
        for chunk in response.iter_content(65536):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    path = Path(name)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as handle:
        for chunk in response.iter_content(65536):
            handle.write(chunk)
    tmp.replace(path)  # never a half-written file under the name asked for
    note(f"{fmt.upper()} export of {month} ({link['kind']}) written.")
    click.echo(str(path))
