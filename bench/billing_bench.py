"""Billing: closing one meter window for 10,000 running instances, and a bill page of a tenant
with 1,000 services.

    DATABASE_URL=postgres://… python bench/billing_bench.py

Runs in a throw-away test database (``test_<name>``, created and dropped here; SQLite in a
temporary folder without DATABASE_URL). Baseline in the same run: the same rows written one by
one with ``update_or_create`` (what a naive meter does), measured on 1,000 instances. Writes the
"Billing" section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INSTANCES = 10_000
SERVICES = 1_000
WINDOW_TARGET_S = 5.0
PAGE_TARGET_MS = 300.0
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def setup():
    tmp = Path(tempfile.mkdtemp(prefix="ems-billing-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("EMS_DATA_DIR", str(tmp))
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    return connection, name


def world(count_services: int, per_service: int):
    from accounts import testing
    from billing.bootstrap import run as billing_bootstrap
    from models_repo import bootstrap
    from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
    from serving.models import Instance, Node, ResourceGroup, Revision, Service

    bootstrap.run(demo=False, log=lambda line: None)
    billing_bootstrap(demo=False, log=lambda line: None)
    testing.ensure_presets()
    owner = testing.make_tenant(name=f"bench{count_services}x{per_service}")
    region = Region.objects.get(name="ap-beijing")
    group, _ = ResourceGroup.objects.get_or_create(
        name="bench-public", region=region, defaults={"kind": "public"}
    )
    node, _ = Node.objects.get_or_create(
        group=group,
        name="bench-node",
        defaults={"capacity_cpu_millicores": 10**9, "capacity_memory_mib": 10**9},
    )
    config = ModelConfig.objects.create(tenant=owner.tenant, name="bench", region=region)
    version = ModelConfigVersion.objects.create(
        tenant=owner.tenant,
        config=config,
        number=1,
        runtime=RuntimeEnvironment.objects.get(tenant__isnull=True, name="angel"),
        address="cos://x/",
        bucket="x",
        key_prefix="x/",
        manifest_digest="0" * 64,
        validation_status="skipped",
    )
    services = Service.objects.bulk_create(
        Service(
            tenant=owner.tenant,
            name=f"s{i}",
            service_id=f"ems-b{count_services:03d}{i:04d}"[-12:],
            region=region,
            group=group,
            config=config,
            created_by=owner,
        )
        for i in range(count_services)
    )
    revisions = Revision.objects.bulk_create(
        Revision(
            service=s,
            number=1,
            version=version,
            cpu_millicores=2000,
            memory_mib=4096,
            quota_type="cpu",
            quota_count=2,
        )
        for s in services
    )
    for service, revision in zip(services, revisions, strict=True):
        service.revision = revision
    Service.objects.bulk_update(services, ["revision"])
    Instance.objects.bulk_create(
        (
            Instance(
                tenant=owner.tenant,
                service=s,
                revision=r,
                node=node,
                instance_id=f"{s.service_id}-{j:06d}",
                cpu_millicores=2000,
                memory_mib=4096,
                state="running",
                started_at=T0 - timedelta(seconds=j % 59, microseconds=1234),
                holds_claim=False,
            )
            for s, r in zip(services, revisions, strict=True)
            for j in range(per_service)
        ),
        batch_size=2000,
    )
    return owner, services


def bench_window():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing import metering
    from billing.models import MeterState, UsageRecord

    world(100, INSTANCES // 100)
    MeterState.objects.update_or_create(name="usage", defaults={"watermark": T0})
    book = metering.PriceBook()
    start = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        rows = metering.close_window(T0, book)
    elapsed = time.perf_counter() - start
    assert rows == INSTANCES, rows
    # baseline: 1,000 of the same rows, one update_or_create each (next window)
    from serving.models import Instance

    facts = list(
        metering._values(Instance.objects.filter(revision__quota_count__gt=0)).order_by("pk")[:1000]
    )
    ws = T0 + timedelta(minutes=1)
    start = time.perf_counter()
    for fact in facts:
        row = metering.compute(fact, ws, ws + timedelta(minutes=1), book)
        key = {"instance_id": row.pop("instance_id"), "window_start": row.pop("window_start")}
        UsageRecord.objects.update_or_create(**key, defaults=row)
    naive = time.perf_counter() - start
    return elapsed, len(queries), naive


def bench_page():
    from django.test import Client

    from billing.models import UsageDaily

    owner, services = world(SERVICES, 0)
    day0 = datetime.now(UTC).date().replace(day=1)
    UsageDaily.objects.bulk_create(
        (
            UsageDaily(
                tenant=owner.tenant,
                service=s,
                day=day0 + timedelta(days=d),
                seconds=86400,
                amount=Decimal("5.76"),
            )
            for s in services
            for d in range(min(28, datetime.now(UTC).day))
        ),
        batch_size=5000,
    )
    client = Client()
    client.force_login(owner.user)
    timings = {}
    for label, url in (("billing page", "/billing/"), ("API bill", "/api/v1/bills/")):
        samples = []
        for _ in range(7):
            start = time.perf_counter()
            res = client.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            assert res.status_code == 200, res.status_code
        timings[label] = (statistics.median(samples), min(samples))
    month = f"{day0:%Y-%m}"
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        res = client.get(f"/api/v1/bills/{month}/")
        samples.append((time.perf_counter() - start) * 1000)
    timings[f"API bill {month} (1,000 lines)"] = (statistics.median(samples), min(samples))
    return timings


def main() -> None:
    connection, name = setup()
    try:
        window_s, queries, naive_s = bench_window()
        pages = bench_page()
    finally:
        connection.creation.destroy_test_db(name, verbosity=0)
    from bench.report import markdown_table, write_section

    load = os.getloadavg()[0]
    vendor = connection.vendor
    rows = [
        [
            f"close one window, {INSTANCES:,} running instances",
            f"{window_s:.2f} s",
            f"{queries} queries",
            f"≤ {WINDOW_TARGET_S:.0f} s",
            "met" if window_s <= WINDOW_TARGET_S else "NOT met",
        ],
        [
            "baseline: update_or_create per row (1,000 rows)",
            f"{naive_s:.2f} s (≈ {naive_s * INSTANCES / 1000:.1f} s for {INSTANCES:,})",
            "2-3 per row",
            "-",
            "-",
        ],
    ]
    for label, (median, best) in pages.items():
        rows.append(
            [
                f"{label}, {SERVICES:,} services",
                f"{median:.0f} ms median ({best:.0f} best of 7)",
                "-",
                f"≤ {PAGE_TARGET_MS:.0f} ms",
                "met" if median <= PAGE_TARGET_MS else "NOT met",
            ]
        )
    body = (
        "Written by `python bench/billing_bench.py` on "
        f"{'PostgreSQL' if vendor == 'postgresql' else vendor} (a throw-away test database). "
        "Closing a window is one transaction: the watermark claim, one query for the instances, "
        "one for rows already there, one upsert per 1,000 rows and one upsert of the daily sums "
        "(the count is pinned by `tests/billing/test_bl_meter.py::"
        "test_queries_per_window_are_constant_per_batch`). Page times are Django test-client "
        "requests (server time: middleware, queries, template), the bill computed from the daily "
        f"sums. Load average at the end: {load:.2f} on 2 shared cores.\n\n"
        + markdown_table(["what", "time", "queries", "target", ""], rows)
    )
    write_section("Billing", body)
    print(body)


if __name__ == "__main__":
    main()
