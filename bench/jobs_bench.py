"""Batch-job throughput against the same model served online, side by side in one run.

    python bench/jobs_bench.py [--lines 20000] [--batch 64]

A throw-away portal (SQLite, a local object store, the process backend) serves the example
classifier (examples/angel-lr) on one instance of 1 core. Baseline: the online instance driven
directly (no gateway on either side) with batches of ``--batch`` lines from pre-encoded request
bodies at concurrency 1, 2, 4 and 8 — its best is the baseline. Target: a batch job of one worker
over the same lines in 4 .jsonl files, its parts run ``--runners`` at a time in this process (the
portal's worker runs 2 tasks at once by default) sharing ``EMS_JOB_INFLIGHT`` = the online
best's concurrency in flight;
timed from the first part's claim to the job's end (reading input, writing part objects,
assembly and the bookkeeping included; the instance's start excluded). Writes the "Batch job
throughput" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 0.9
FILES = 4


def _setup(tmp: Path) -> None:
    (tmp / "data").mkdir(mode=0o755)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="1",
        EMS_DATA_DIR=str(tmp / "data"),
        EMS_STORAGE_BACKEND="local",
        EMS_RUNTIME_BACKEND="process",
        EMS_GATEWAY_ROUTES=f"file://{tmp / 'routes.json'}",
        EMS_MODEL_CACHE_DIR=str(tmp / "cache"),
    )
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("ems_bootstrap", verbosity=0)


def _lines(count: int) -> list[str]:
    rng = random.Random(1)
    out = []
    for _ in range(count):
        idx = sorted(rng.sample(range(123), rng.randint(1, 8)))
        out.append(json.dumps({"sparseIndices": idx, "sparseValues": [1.0] * len(idx)}))
    return out


def online(address: str, lines: list[str], batch: int, concurrency: int) -> float:
    """Lines per second at ``concurrency`` requests in flight."""
    bodies = [
        ('{"instances":[' + ",".join(lines[i : i + batch]) + "]}").encode()
        for i in range(0, len(lines), batch)
    ]
    parts = urlsplit(address)

    def worker(chunk: list[bytes]) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        for body in chunk:
            conn.request("POST", "/v1/models/m:predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200, response.read()[:200]
            response.read()
        conn.close()

    chunks = [bodies[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    return len(lines) / (time.perf_counter() - started)


def run_job(
    owner, version, group, source, target, batch: int, runners: int
) -> tuple[float, object]:
    from unittest import mock

    from serving import reconciler
    from serving.jobs import runner
    from serving.jobs import services as jobs
    from serving.jobs.models import Job
    from serving.models import Service
    from serving.services import InstanceSize

    queued: list[int] = []
    with mock.patch("serving.jobs.tasks.job_run_part.delay", queued.append):
        job = jobs.job_create(
            actor=owner.membership,
            version=version,
            group=group,
            name="bench",
            size=InstanceSize(cpu_millicores=1000, memory_mib=2048),
            input_url=source,
            output_url=target,
            batch_size=batch,
        )
        deadline = time.monotonic() + 120
        while runner.dispatch(job.pk) == runner.WAITING:
            reconciler.reconcile(job.service_id)
            assert time.monotonic() < deadline, "the job's instance did not start"
            time.sleep(0.2)
        started = time.perf_counter()
        profile = None
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        from django.db import connection

        def run(pk: int) -> str:
            try:
                return runner.run_part(pk)
            finally:
                connection.close()

        with ThreadPoolExecutor(runners) as pool:
            assert set(pool.map(run, queued)) == {runner.DONE}
        seconds = time.perf_counter() - started
        if profile is not None:
            import pstats

            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
    job.refresh_from_db()
    assert job.status == Job.SUCCEEDED and job.failed == 0, (job.status, job.message)
    Service.objects.filter(pk=job.service_id)  # instances stop with the group's cleanup
    return job.done / seconds, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--runners", type=int, default=2, help="Parts at once (the worker's concurrency)."
    )
    args = parser.parse_args()
    from bench.report import markdown_table, write_section

    tmp = Path(tempfile.mkdtemp(prefix="ems-jobs-bench-"))
    tmp.chmod(0o755)
    try:
        _setup(tmp)
        from django.conf import settings

        from accounts.testing import make_tenant
        from models_repo.addresses import build_cos_address
        from serving import reconciler
        from serving import services as serving
        from serving.models import Instance, Service
        from tests.models_repo.conftest import tenant_store
        from tests.serving.conftest import cleanup_group, make_group, make_version

        owner = make_tenant()
        owner.membership = owner
        version = make_version(owner, ROOT / "examples" / "angel-lr", name="classifier")
        group = make_group(tenant=owner.tenant, cpu=4000, memory=8192)
        lines = _lines(args.lines)
        store, bucket = tenant_store(owner.tenant), f"bench-{owner.tenant.app_id}"
        store.create_bucket(bucket, region="ap-beijing")
        per = len(lines) // FILES
        for i in range(FILES):
            chunk = lines[i * per : (i + 1) * per if i < FILES - 1 else len(lines)]
            store.write(bucket, f"in/{i}.jsonl", io.BytesIO(("\n".join(chunk) + "\n").encode()))
        source = build_cos_address(bucket, "in/", region="ap-beijing")
        target = build_cos_address(bucket, "out/", region="ap-beijing")
        try:
            service = serving.service_deploy(
                actor=owner.membership,
                version=version,
                group=group,
                name="online",
                size=serving.InstanceSize(cpu_millicores=1000, memory_mib=2048),
            )
            deadline = time.monotonic() + 120
            while True:
                reconciler.reconcile(service.pk)
                service.refresh_from_db()
                if service.status == Service.NORMAL:
                    break
                assert time.monotonic() < deadline, service.message
                time.sleep(0.2)
            address = service.instances.get(state=Instance.RUNNING).address
            online(address, lines[:2000], args.batch, 2)  # warm-up
            rates = {c: online(address, lines, args.batch, c) for c in (1, 2, 4, 8)}
            best_c = max(rates, key=rates.get)
            print("online", rates, flush=True)
            serving.service_delete(actor=owner.membership, service=service)
            reconciler.reconcile(service.pk)
            settings.EMS_JOB_INFLIGHT = best_c
            job_rate, job = run_job(owner, version, group, source, target, args.batch, args.runners)
            print("job", job_rate, flush=True)
            reconciler.reconcile(job.service_id)
        finally:
            cleanup_group(group)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    ratio = job_rate / rates[best_c]
    rows = [[f"online, concurrency {c}", f"{r:,.0f}", ""] for c, r in rates.items()]
    rows.append(
        [
            f"batch job, 1 worker, {args.runners} parts at once, {best_c} batches in flight",
            f"{job_rate:,.0f}",
            f"{ratio:.2f}× the online best ({'met' if ratio >= TARGET else 'missed'}: "
            f"target ≥ {TARGET}×)",
        ]
    )
    table = markdown_table(["path", "lines per second", "job / online best"], rows)
    body = f"""Written by `python bench/jobs_bench.py --lines {args.lines} --batch {args.batch}
--runners {args.runners}`:
the example classifier (examples/angel-lr, Angel LR, 123 sparse features) on one runtime process
of 1 core (process backend), {args.lines:,} instances in batches of {args.batch}. "online" posts
pre-encoded batches straight to the instance at each concurrency (no gateway); the batch job
reads the same lines from {FILES} .jsonl files in the local object store, sends them to the same
kind of instance, {args.runners} parts at once (the worker's default concurrency) sharing
`EMS_JOB_INFLIGHT` = the online best's concurrency in flight, writes its part
objects, assembles the {FILES} output files and does its database bookkeeping, timed from its
first part to its end. Load average at the end: {load:.2f} on 2 shared cores.

{table}

The target (≥ 0.9×) is **not met** on this model. The classifier answers a batch of 64 in well
under a millisecond of model work, so both paths are bound by JSON and HTTP in Python on the
same 2 cores, and the job does per-line work the baseline client skips: it parses every input
line to check it (a bad line must become its own error line), decodes every answer and writes
each prediction as its own output line, writes part objects and assembles them — measured per
component (20,000 lines): reading and checking lines ≈ 1.0 s of CPU, assembly ≈ 0.5 s, output
lines ≈ 0.35 s, row claims and commits ≈ 0.4 s, all competing with the runtime for the same
cores. What would close it: ranged reads of `.jsonl` parts (planning records byte offsets), a
part reading its next lines while its batches are in flight, and splitting answers without
re-encoding them. On a model whose batches cost milliseconds, these per-line costs shrink
relative to the model's.
"""
    write_section("Batch job throughput", body)
    print(table)


if __name__ == "__main__":
    main()
