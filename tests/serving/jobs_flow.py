"""Shared steps of the batch-job tests (process backend and Docker): input files of the example
classifier (examples/angel-lr, 123 sparse features) with a few bad lines, the online service's
answers for the same lines, and readers of a job's output."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from models_repo.addresses import build_cos_address

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODEL = ROOT / "examples" / "angel-lr"
# file name → number of lines; "c.json" is a JSON array (1,000 instances in all)
LAYOUT = {"a.jsonl": 400, "sub/b.jsonl": 350, "c.json": 250}
BAD = {("sub/b.jsonl", 17): "not json {", ("sub/b.jsonl", 42): ""}
WRONG_SHAPE = {("a.jsonl", 99): {"sparseIndices": "not a list"}}


def instance(rng: random.Random) -> dict:
    indices = sorted(rng.sample(range(123), rng.randint(1, 6)))
    return {"sparseIndices": indices, "sparseValues": [1.0] * len(indices)}


def seed_inputs(tenant, *, seed: int = 7, bucket: str = "data", prefix: str = "in/"):
    """Write the input files; returns (input address, output address, {file: [raw lines]})."""
    from tests.models_repo.conftest import tenant_store

    store = tenant_store(tenant)
    full = f"{bucket}-{tenant.app_id}"
    store.create_bucket(full, region="ap-beijing")
    rng = random.Random(seed)
    lines: dict[str, list[str]] = {}
    for name, count in LAYOUT.items():
        rows = []
        for n in range(1, count + 1):
            if (name, n) in BAD:
                rows.append(BAD[(name, n)])
            elif (name, n) in WRONG_SHAPE:
                rows.append(json.dumps(WRONG_SHAPE[(name, n)]))
            else:
                rows.append(json.dumps(instance(rng)))
        lines[name] = rows
        if name.endswith(".json"):
            data = ("[" + ",\n".join(rows) + "]").encode()
        else:
            data = ("\n".join(rows) + "\n").encode()
        store.write(full, prefix + name, io.BytesIO(data))
    source = build_cos_address(full, prefix, region="ap-beijing")
    target = build_cos_address(full, "out/", region="ap-beijing")
    return source, target, lines


def bad_count() -> int:
    return len(BAD) + len(WRONG_SHAPE)


def read_outputs(tenant, *, bucket: str = "data", prefix: str = "out/") -> dict[str, list[str]]:
    from tests.models_repo.conftest import tenant_store

    store = tenant_store(tenant)
    full = f"{bucket}-{tenant.app_id}"
    out = {}
    for name in LAYOUT:
        with store.open(full, f"{prefix}{name}.out") as stream:
            out[name] = stream.read().decode().split("\n")[:-1]
    return out


def online_answers(address: str, lines: dict[str, list[str]]) -> dict[str, list]:
    """What the online service answers for each line, one request per line (None for the lines
    that are not an instance)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    answers = {}
    for name, rows in lines.items():
        out = []
        for row in rows:
            try:
                value = json.loads(row)
            except ValueError:
                out.append(None)
                continue
            body = json.dumps({"instances": [value]})
            conn.request("POST", "/v1/models/m:predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read())
            out.append(data["predictions"][0] if response.status == 200 else None)
        answers[name] = out
    conn.close()
    return answers


def check_outputs(outputs: dict[str, list[str]], answers: dict[str, list]) -> int:
    """Every output file line-aligned with its input and equal to the online answers; the
    bad lines are error objects naming their line. Returns the number of error lines."""
    errors = 0
    for name, count in LAYOUT.items():
        got = outputs[name]
        assert len(got) == count, f"{name}: {len(got)} output lines for {count} input lines"
        for n, (line, want) in enumerate(zip(got, answers[name], strict=True), start=1):
            value = json.loads(line)
            if want is None:
                assert set(value) == {"error"}, f"{name}:{n} should be an error: {line}"
                if (name, n) in BAD:
                    assert f"line {n}" in value["error"], value
                errors += 1
            else:
                assert value == want, f"{name}:{n}: {value} != online {want}"
    return errors
