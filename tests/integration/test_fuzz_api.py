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
import re
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
# The owner goes last: its random DELETEs may remove the sub-account. Its own key may be revoked
# by a generated DELETE of api-keys/{id} too; it is restored before every operation.
EXAMPLES = {
    ("sub", "positive"): 3,
    ("outsider", "positive"): 3,
    ("owner", "positive"): 6,
    ("owner", "negative"): 4,
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
def live_portal(settings):
    """gunicorn on the test database (storage shared with this process); yields its base URL
    and its log."""
    url = _database_url()
    from django.core.management import call_command

    call_command("ems_bootstrap", verbosity=0)
    data = Path(tempfile.mkdtemp(prefix="ems-fuzz-"))
    settings.EMS_STORAGE_BACKEND = "local"
    settings.EMS_STORAGE_ROOT = data / "storage"
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
            "EMS_THROTTLE_LOGIN": "100000/minute",
            "EMS_THROTTLE_SIGNUP": "100000/minute",
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
                "--access-logfile",
                "-",
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


def _restore(tenants) -> None:
    """Undo what a generated request may have taken away from the actors themselves: their
    keys (DELETE api-keys/{id}) and the service role (POST service-role/revoke/, after which
    every service of the tenant is out of reach)."""
    from accounts import testing
    from accounts.models import ApiKey

    ApiKey.objects.filter(name="fuzz", revoked_at__isnull=False).update(revoked_at=None)
    for tenant in tenants:
        testing.authorize(tenant)


METHOD_ORDER = {"GET": 0, "HEAD": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}
TARGETED = {"owner": 3, "outsider": 2}


def _seed(owner, make_sub_account) -> dict:
    """Real objects of the owner, so a pass can call the per-object operations with ids that
    exist (random ids are almost always 404): a config version on a dedicated group, a service
    deployed from it (no worker: it stays pending), a policy, a spare sub-account and key."""
    from accounts.models import AuditEvent, Policy
    from accounts.services import api_key_create
    from models_repo.models import RuntimeEnvironment
    from serving import services
    from tests.serving.conftest import ANGEL_VERSION_DIR, make_group, make_version
    from tests.serving.helpers import angel_model

    version = make_version(owner, angel_model() / ANGEL_VERSION_DIR)
    group = make_group(tenant=owner.tenant)
    service = services.service_deploy(
        actor=owner.membership,
        version=version,
        group=group,
        name="fuzzed",
        size=services.InstanceSize(cpu_millicores=500, memory_mib=512),
        auth_enabled=True,
    )
    policy = Policy.objects.create(
        tenant=owner.tenant,
        name="fuzz-policy",
        document={
            "version": "2.0",
            "statement": [{"effect": "allow", "action": ["ems:Describe*"], "resource": ["*"]}],
        },
    )
    spare = make_sub_account(name="spare", policies=())
    key, _ = api_key_create(actor=owner.membership, name="spare")
    by_prefix = {
        "/api/v1/audit/": AuditEvent.objects.filter(tenant=owner.tenant).first().pk,
        "/api/v1/auth/api-keys/": key.pk,
        "/api/v1/collaborators/": spare.membership.pk,
        "/api/v1/model-configs/": version.config.pk,
        "/api/v1/policies/": policy.pk,
        "/api/v1/resource-groups/": group.pk,
        "/api/v1/runtimes/": RuntimeEnvironment.objects.get(tenant__isnull=True, name="angel").pk,
        "/api/v1/sub-accounts/": spare.membership.pk,
    }
    return {
        "by_prefix": by_prefix,
        "service_id": service.service_id,
        "bucket": version.address.split("://", 1)[1].split(".", 1)[0],  # <name>-<app id>
        "number": version.number,
        "policy_id": policy.pk,
    }


def _path_values(seeded: dict, path: str) -> dict | None:
    """Path parameters naming the seeded objects, or None for an operation without any."""
    values = {}
    for name in ("service_id", "bucket", "number", "policy_id"):
        if "{" + name + "}" in path:
            values[name] = seeded[name]
    if "{id}" in path:
        seeded_id = seeded["by_prefix"].get(path.split("{id}")[0])
        if seeded_id is None:  # nothing seeded there (e.g. a group's purchases): schema pass only
            return None
        values["id"] = seeded_id
    if re.search(r"\{(?!(?:service_id|bucket|number|policy_id|id)\})[^}]+\}", path):
        return None  # a parameter no seeded object names (a month, a nested group)
    return values or None


def _fuzz(
    operation,
    *,
    base: str,
    headers: dict,
    examples: int,
    mode: str,
    path_values=None,
    statuses: list | None = None,
) -> int:
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
    @hypothesis.given(
        case=operation.as_strategy(
            generation_mode=GenerationMode(mode), path_parameters=path_values
        )
    )
    def run(case):
        sent.append(1)
        response = case.call_and_validate(
            base_url=base,
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )
        if statuses is not None:
            statuses.append((case.method.upper(), operation.path, response.status_code))

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
    seeded = _seed(owner, make_sub_account)
    tenants = [owner.tenant, outsider.tenant]
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
            _restore(tenants)
            try:
                cases += _fuzz(operation, base=base, headers=headers, examples=examples, mode=mode)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis groups its failures
                failures.append(f"{who} ({mode}) {operation.label}: {str(exc)[:1500]}")
    # then the per-object operations on real objects: reads, writes, deletes last; the outsider
    # names the owner's objects (it must get 4xx, never a 5xx)
    targeted = sorted(
        (op for op in operations if _path_values(seeded, op.path)),
        key=lambda op: METHOD_ORDER.get(op.method.upper(), 1),
    )
    seen: dict[str, list] = {who: [] for who in TARGETED}
    for who, count in TARGETED.items():
        headers = {"Authorization": f"Bearer {actors[who]}"}
        for operation in targeted:
            _restore(tenants)
            try:
                cases += _fuzz(
                    operation,
                    base=base,
                    headers=headers,
                    examples=max(1, int(count * SCALE)),
                    mode="positive",
                    path_values=_path_values(seeded, operation.path),
                    statuses=seen[who],
                )
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{who} (real ids) {operation.label}: {str(exc)[:1500]}")
    elapsed = time.monotonic() - started
    print(
        f"fuzz: {len(operations)} operations ({len(targeted)} also on real objects), "
        f"{cases} cases in {elapsed:.0f} s"
    )
    # the real ids were used: the owner reads its service; the outsider never reads it
    detail = ("GET", "/api/v1/services/{service_id}/")
    reads = [code for m, p, code in seen["owner"] if (m, p) == detail]
    trail = [line for line in log.read_text().splitlines() if seeded["service_id"] in line]
    assert 200 in reads, f"the owner's reads of its service answered {reads}: {trail[:30]}"
    assert all(code == 404 for m, p, code in seen["outsider"] if (m, p) == detail)
    server_errors = [
        line for line in log.read_text(errors="replace").splitlines() if "Error" in line
    ]
    assert not failures, (
        "\n\n".join(failures) + "\n\nserver log:\n" + "\n".join(server_errors[-40:])
    )
    budget = BUDGET_SECONDS * max(1.0, SCALE)
    assert elapsed < budget, f"the fuzz took {elapsed:.0f} s, over its budget of {budget:.0f} s"
