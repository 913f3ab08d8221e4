"""Batch jobs through the installed `ems` command against a live portal (the Procfile's processes
on the embedded default): upload JSON Lines → `ems jobs create --wait` (progress bar, exit 0) →
`jobs list/get` → `ems download` of an output, line-aligned and equal to Angel's own arithmetic
→ a cancelled job (`jobs cancel --wait`, then `jobs wait` exits 1) → the exit codes scripts use."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, angel_margin

pytestmark = pytest.mark.integration

MODEL = ROOT / "examples" / "angel-lr"  # 123 sparse features, inside the repository


def inputs(folder: Path) -> dict[str, list[str]]:
    rng = random.Random(19)
    lines = {}
    for name, count in (("a.jsonl", 120), ("b.jsonl", 80)):
        rows = []
        for _ in range(count):
            indices = sorted(rng.sample(range(123), rng.randint(1, 5)))
            rows.append(
                json.dumps({"sparseIndices": indices, "sparseValues": [1.0] * len(indices)})
            )
        lines[name] = rows
    lines["b.jsonl"][10] = "not json {"  # reported on its own output line
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows) + "\n")
    return lines


def _json(result):
    return json.loads(result.stdout)


def test_batch_jobs_through_the_cli(stack, ems, tmp_path):
    url = stack.web_url
    ems("signup", "--url", url, "--username", "jobs", "--email", "jobs@example.com",
        "--password", "cli-jobs-Passw0rd!")  # fmt: skip
    ems("login", "--url", url, "--username", "jobs", "--password", "cli-jobs-Passw0rd!")
    ems("role", "authorize")
    bucket = _json(ems("buckets", "create", "data", "--region", "ap-guangzhou", "-o", "json"))
    name = bucket["name"]
    ems("configs", "create", "lr", "--runtime", "angel", "--upload", str(MODEL),
        "--bucket", name, "--prefix", "models/lr")  # fmt: skip
    folder = tmp_path / "in"
    folder.mkdir()
    lines = inputs(folder)
    ems("buckets", "upload", name, str(folder), "--prefix", "in")
    base = f"cos://{name}.cos.ap-guangzhou.myqcloud.com/"

    # a bad input address: refused (exit 5) with what to fix
    refused = ems("jobs", "create", "lr", "--input", base + "nothing/", "--output-folder",
                  base + "out/", code=5)  # fmt: skip
    assert "nothing/" in refused.stderr and refused.stderr.count("\n") == 1

    job = _json(ems("jobs", "create", "lr", "--name", "lr-batch", "--input", base + "in/",
                    "--output-folder", base + "out/", "--batch-size", "16", "--max-failed", "1",
                    "--wait", "--timeout", "300", "-o", "json"))  # fmt: skip
    assert job["status"] == "Succeeded", job
    assert (job["total"], job["done"], job["failed"]) == (200, 200, 1)
    assert job["errors"] and job["errors"][0]["line"] == 11

    table = ems("jobs", "list").stdout
    assert job["job_id"] in table and "Succeeded" in table and "200" in table
    got = _json(ems("jobs", "get", "lr-batch", "-o", "json"))
    assert got["job_id"] == job["job_id"] and got["percent"] == 100.0
    assert _json(ems("jobs", "wait", job["job_id"], "-o", "json"))["status"] == "Succeeded"

    # the output, downloaded: one line per input line, each Angel's answer or the line's error
    target = tmp_path / "b.out"
    ems("download", base + "out/b.jsonl.out", "-o", str(target))
    out = target.read_text().splitlines()
    assert len(out) == len(lines["b.jsonl"])
    for raw, answer in zip(lines["b.jsonl"], out, strict=True):
        answer = json.loads(answer)
        if raw.startswith("not json"):
            assert "error" in answer
            continue
        expected = angel_margin(MODEL, json.loads(raw))
        assert answer["pred"] == pytest.approx(expected, abs=1e-5)
        assert answer["proba"] == pytest.approx(1 / (1 + math.exp(-expected)), abs=1e-5)
    stdout = ems("download", base + "out/a.jsonl.out", "-o", "-").stdout
    assert len(stdout.splitlines()) == 120
    assert ems("download", base + "out/none.out", code=3).stderr.startswith("ems: 404")
    assert (
        "is a folder"
        in ems("download", base + "out/", code=5).stderr
        + ems("download", base + "out", code=5).stderr
    )

    # cancel: a bigger input, cancelled (by id, at once) while its worker starts; what was
    # written stays, the rest is not predicted
    big = tmp_path / "big"
    big.mkdir()
    row = lines["a.jsonl"][0]
    (big / "big.jsonl").write_text((row + "\n") * 20000)
    ems("buckets", "upload", name, str(big), "--prefix", "big")
    started = _json(ems("jobs", "create", "lr", "--name", "to-cancel", "--input", base + "big/",
                        "--output-folder", base + "cancelled/", "-o", "json"))  # fmt: skip
    assert started["status"] == "Waiting"
    cancelled = _json(ems("jobs", "cancel", started["job_id"], "--wait", "-o", "json"))
    assert cancelled["status"] == "Cancelled" and cancelled["done"] < 20000
    ended = ems("jobs", "wait", "to-cancel", code=1)
    assert "ended Cancelled" in ended.stderr
    again = ems("jobs", "cancel", "to-cancel", code=5)  # ended: refused, saying so
    assert "already ended" in again.stderr

    assert ems("jobs", "get", "job-zzzzzzzz", code=3).stderr.startswith("ems: 404")
    assert "No job named 'nope'" in ems("jobs", "get", "nope", code=3).stderr
    assert ems("jobs", "create", "lr", code=2).returncode == 2  # --input missing
    assert sys.executable  # the stack ran on this interpreter
