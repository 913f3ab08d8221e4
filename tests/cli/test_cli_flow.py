"""The whole flow through the installed `ems` command against a live portal (the Procfile's
processes on the embedded default): signup → login → role → bucket → config from an upload →
deploy --wait → predict → scale → version 2.0 → update → rollback → usage list and export
(CSV, XLSX) → stop → delete; plus the exit codes and one-line errors scripts rely on."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.conftest import EMS, angel_margin
from tests.testdata import require_testdata

pytestmark = pytest.mark.integration

REQUEST = {"instances": [{"sparseIndices": [0, 3, 7], "sparseValues": [1.0, 1.0, 2.0]}]}


def _angel_folder() -> Path:
    return require_testdata() / "models" / "angel" / "lr" / "lr-model" / "6"


def _json(result) -> dict | list:
    return json.loads(result.stdout)


def test_whole_flow_through_the_cli(stack, ems, tmp_path):
    url = stack.web_url
    ems("signup", "--url", url, "--username", "clio", "--email", "clio@example.com",
        "--password", "cli-flow-Passw0rd!")  # fmt: skip
    # Not logged in yet: exit 4 with a one-line hint.
    denied = ems("services", "list", code=4)
    assert "ems login" in denied.stderr and denied.stderr.count("\n") == 1
    ems("login", "--url", url, "--username", "clio", "--password", "cli-flow-Passw0rd!")
    mode = stat.S_IMODE(ems.config.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert "api_key" in json.loads(ems.config.read_text())

    # Storage is refused until the service role is authorized (exit 4), then works.
    refused = ems("buckets", "create", "models", "--region", "ap-guangzhou", code=4)
    assert "403" in refused.stderr
    assert _json(ems("role", "authorize", "-o", "json"))["authorized"] is True
    bucket = _json(ems("buckets", "create", "models", "--region", "ap-guangzhou", "-o", "json"))
    assert bucket["name"].startswith("models-")

    # A config from an uploaded folder; a bad runtime name is exit 3 naming the choices.
    folder = _angel_folder()
    missing = ems("configs", "create", "lr", "--runtime", "nope", "--upload", str(folder),
                  "--bucket", bucket["name"], code=3)  # fmt: skip
    assert "No runtime named 'nope'" in missing.stderr and "angel" in missing.stderr
    cfg = _json(ems("configs", "create", "lr", "--runtime", "angel", "--upload", str(folder),
                    "--bucket", bucket["name"], "--prefix", "lr/v1", "-o", "json"))  # fmt: skip
    assert cfg["name"] == "lr" and cfg["versions"][0]["version"] == "1.0"
    assert "lr" in ems("configs", "list").stdout

    svc = _json(ems("deploy", "lr", "--name", "lr-cli", "--quota-count", "1", "--wait",
                    "--timeout", "240", "-o", "json"))  # fmt: skip
    sid = svc["service_id"]
    assert svc["status"] == "Normal" and svc["instances_ready"] == 1 and svc["auth_enabled"]

    body = tmp_path / "req.json"
    body.write_text(json.dumps(REQUEST))
    answer = json.loads(ems("predict", sid, "-d", f"@{body}").stdout)
    (score,) = answer["predictions"]
    margin = angel_margin(folder, REQUEST["instances"][0])
    assert score["pred"] == pytest.approx(margin, abs=1e-5)
    assert score["proba"] == pytest.approx(1 / (1 + math.exp(-margin)), abs=1e-5)
    # A wrong token is refused by the gateway: exit 4, the gateway's own message.
    bad = ems("predict", sid, "-d", json.dumps(REQUEST), "--token", "x" * 43, code=4)
    assert "401" in bad.stderr
    # Not JSON: refused before anything is sent.
    assert "not JSON" in ems("predict", sid, "-d", "{nope", code=5).stderr

    scaled = _json(ems("services", "scale", "lr-cli", "2", "--wait", "-o", "json"))
    assert scaled["replicas"] == 2 and scaled["instances_ready"] == 2

    ems("configs", "version", "lr", "--upload", str(folder), "--bucket", bucket["name"],
        "--prefix", "lr/v2")  # fmt: skip
    updated = _json(ems("services", "update", sid, "2.0", "--wait", "-o", "json"))
    assert updated["revision"]["version"] == "2.0"
    rolled = _json(ems("services", "rollback", sid, "--wait", "-o", "json"))
    assert rolled["revision"]["version"] == "1.0"
    again = json.loads(ems("predict", sid, "-d", json.dumps(REQUEST)).stdout)["predictions"]
    assert again == [score]

    table = ems("services", "list").stdout
    assert sid in table and "Normal" in table
    listed = _json(ems("services", "list", "-o", "json"))
    assert [s["service_id"] for s in listed] == [sid]

    _usage_through_the_cli(ems, sid, tmp_path)

    stopped = _json(ems("services", "stop", sid, "--wait", "-o", "json"))
    assert stopped["status"] == "Stopped"
    assert ems("services", "get", "ems-zzzzzzzz", code=3).stderr.startswith("ems: 404")
    ems("services", "delete", sid, "--yes")
    assert _json(ems("services", "list", "-o", "json")) == []


def _usage_through_the_cli(ems, sid: str, tmp_path: Path) -> None:
    """`ems usage list` and `ems usage export` (CSV and XLSX) over the minutes metered so far
    (the live stack meters 10 s windows)."""
    deadline = time.monotonic() + 90
    while not (rows := _json(ems("usage", "list", "--service", sid, "-o", "json"))):
        assert time.monotonic() < deadline, "no usage was metered within 90 s"
        time.sleep(3)
    assert {r["service_id"] for r in rows} == {sid}
    assert all(Decimal(r["amount"]) > 0 and r["seconds"] > 0 for r in rows), rows[:3]
    table = ems("usage", "list")
    assert sid in table.stdout and " rows, " in table.stderr

    # the usage rows as CSV: every row listed above is in the file (metering may add more)
    out = tmp_path / "usage.csv"
    written = ems("usage", "export", "--kind", "usage", "-o", str(out))
    assert written.stdout.strip() == str(out)
    exported = [r for r in csv.DictReader(out.open()) if r["service_id"] == sid]
    assert {r["instance_id"] for r in rows} <= {r["instance_id"] for r in exported}
    assert len(exported) >= len(rows)
    assert sum(Decimal(r["amount"]) for r in exported) >= sum(Decimal(r["amount"]) for r in rows)

    # the bill as CSV (the default kind), to stdout: its lines, then the total
    bill = list(csv.DictReader(io.StringIO(ems("usage", "export", "-o", "-").stdout)))
    assert bill[-1]["kind"] == "total" and any(r["service_id"] == sid for r in bill[:-1])

    # XLSX: a Bill and a Usage sheet, opened with openpyxl
    from openpyxl import load_workbook

    xlsx = tmp_path / "bill.xlsx"
    ems("usage", "export", "--format", "xlsx", "-o", str(xlsx))
    book = load_workbook(xlsx, read_only=True)
    assert book.sheetnames == ["Bill", "Usage"]
    usage_sheet = list(book["Usage"].iter_rows(values_only=True))
    assert usage_sheet[0][:2] == ("service_id", "instance_id")
    assert sum(1 for r in usage_sheet[1:] if r[0] == sid) >= len(rows)

    # wrong input is a usage error (exit 2) that says what to write
    assert "YYYY-MM" in ems("usage", "export", "--month", "2026-13", code=2).stderr
    assert "--kind" in ems("usage", "export", "--format", "xlsx", "--kind", "usage", code=2).stderr
    # a month with no usage exports a bill of only its total
    empty = ems("usage", "export", "--month", "2001-01", "-o", "-").stdout
    assert [r["kind"] for r in csv.DictReader(io.StringIO(empty))] == ["total"]


def test_usage_errors_and_unreachable(ems, tmp_path):
    assert ems("deploy", code=2).returncode == 2
    other = {**os.environ, "EMS_CONFIG": str(tmp_path / "c.json")}
    result = subprocess.run(
        [str(EMS), "login", "--url", "http://127.0.0.1:9", "--api-key", "k"],
        env=other,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 7 and "Cannot reach" in result.stderr
    assert not (tmp_path / "c.json").exists()
