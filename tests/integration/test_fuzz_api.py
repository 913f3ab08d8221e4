"""Fuzz: schemathesis over ``/api/schema/`` against a live server on PostgreSQL.

A real gunicorn serves the portal on a free loopback port, on the test database pytest-django
made (the test is transactional, so the server sees the rows it writes). Every operation of the
schema is called with generated requests as the owner, a sub-account and an outsider (API keys as
Bearer auth): no answer may be a 5xx and every answer must conform to the schema. The number of
examples is bounded so the suite stays within CI's budget (``EMS_FUZZ_EXAMPLES`` raises it for a
longer local run). Deploys are fuzzed too: the process backend, and no worker consumes the
reconcile queue, so nothing starts and nothing hangs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from runtimes.testing import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
# examples per operation: (actor, generation mode) -> count. Negative cases (bad types, missing
# fields, out-of-range values) must be 4xx answers too, never a 5xx.
EXAMPLES = {
    ("owner", "positive"): 6,
    ("owner", "negative"): 4,
    ("sub", "positive"): 3,
    ("outsider", "positive"): 3,
}
SCALE = float(os.environ.get("EMS_FUZZ_EXAMPLES", "1"))
BUDGET_SECONDS = 240


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        from tests.conftest import service_missing

        service_missing("the fuzz suite runs against PostgreSQL (set DATABASE_URL)")
    auth = db["USER"] or "postgres"
    if db["PASSWORD"]:
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def live_portal():
    """gunicorn on the test database; yields its base URL."""
    url = _database_url()
    from django.core.management import call_command

    call_command("ems_bootstrap", verbosity=0)
    data = Path(tempfile.mkdtemp(prefix="ems-fuzz-"))
    port = free_port()
    # the embedded broker and cache (no REDIS_URL): nothing the fuzz queues reaches a worker
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CELERY_"))}
    env.update(
        {
            "DATABASE_URL": url,
            "DATABASE_CONN_MAX_AGE": "0",
            "DEBUG": "0",
            "EMS_DATA_DIR": str(data),
            "EMS_STORAGE_BACKEND": "local",
            "EMS_STORAGE_ROOT": str(data / "storage"),
            "EMS_RUNTIME_BACKEND": "process",
            "EMS_GATEWAY_ROUTES": f"file://{data / 'routes.json'}",
            # the fuzz is not what the throttles are for
            "EMS_THROTTLE_API": "100000/minute",
            "EMS_THROTTLE_API_ANON": "100000/minute",
            "EMS_THROTTLE_AUTH": "100000/minute",
            "EMS_THROTTLE_SENSITIVE": "100000/minute",
            "PYTHONPATH": str(ROOT),
        }
    )
    log = data / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"{base}/api/schema/", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def _key(member) -> str:
    from accounts.services import api_key_create

    return api_key_create(actor=member, name="fuzz")[1]


def _fuzz(operation, *, base: str, headers: dict, examples: int, mode: str) -> int:
    """Run ``examples`` generated requests of one operation; returns how many were sent."""
    import hypothesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    sent = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def run(case):
        sent.append(1)
        case.call_and_validate(
            base_url=base,
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )

    run()
    return len(sent)


def test_fuzz_api_no_5xx_and_schema_conformance(live_portal, owner, make_sub_account, outsider):
    import schemathesis

    base, log = live_portal
    from accounts import testing

    # a read-only sub-account (its key made while it could, then narrowed): writes get 403
    sub = make_sub_account(name="fuzzer", policies=("EMSFullAccess",))
    actors = {
        "owner": _key(owner.membership),
        "sub": _key(sub.membership),
        "outsider": _key(outsider.membership),
    }
    sub.membership.attachments.all().delete()
    testing.attach(sub.membership, "EMSReadOnlyAccess")
    schema = schemathesis.openapi.from_url(f"{base}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the schema lost its operations"
    started = time.monotonic()
    failures: list[str] = []
    cases = 0
    for (who, mode), count in EXAMPLES.items():
        headers = {"Authorization": f"Bearer {actors[who]}"}
        examples = max(1, int(count * SCALE))
        for operation in operations:
            try:
                cases += _fuzz(operation, base=base, headers=headers, examples=examples, mode=mode)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis groups its failures
                failures.append(f"{who} ({mode}) {operation.label}: {str(exc)[:1500]}")
    elapsed = time.monotonic() - started
    print(f"fuzz: {len(operations)} operations, {cases} cases in {elapsed:.0f} s")
    server_errors = [
        line for line in log.read_text(errors="replace").splitlines() if "Error" in line
    ]
    assert not failures, (
        "\n\n".join(failures) + "\n\nserver log:\n" + "\n".join(server_errors[-40:])
    )
    assert elapsed < BUDGET_SECONDS, f"the fuzz took {elapsed:.0f} s, over its budget"
