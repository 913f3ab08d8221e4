"""The control plane at scale: 10,000 services on 100 nodes, reconciled, published and listed.

    DATABASE_URL=postgres://… REDIS_URL=redis://…/N python bench/controlplane_bench.py \
        [--services 10000] [--nodes 100] [--baseline-ref 06cddd1] [--baseline-services 10000]

Runs twice, side by side in one run: the **baseline** (the code of ``--baseline-ref``, taken out
of git with ``git archive`` into a temporary folder) and the **current** tree, each in its own
process on its own throw-away test database (``test_<name>``, created and dropped there) and its
own key prefix in the Redis route store (``test_<name>_cpbench``, so a test run on the same
database server is not disturbed). The backend is the scale harness
(``serving.backends.simulated``: instances start and stop instantly, in memory; loaded from the
current tree and installed for every node of both runs), so what is measured is the control
plane itself: queries, round trips to the route store, Python.

Per run: one tenant with ``--services`` services (1 replica each, 1 core / 1 GiB, running,
Normal) on one dedicated group of ``--nodes`` nodes, seeded with ``bulk_create`` (and the
tables ANALYZEd, as autovacuum would); then

1. route publication of every service into an empty store, then again with nothing changed;
2. the reconcile pass over every service with nothing to do — the pass beat runs every 15 s;
3. ``--busy`` services deployed at once (their instance pending): the pass that launches them,
   then the pass that sees them AVAILABLE and makes them Normal;
4. the service list page and ``GET /api/v1/services/`` (Django test client, server time),
   first page and a middle page, p50/p95 of ``--samples`` requests each.

The current tree runs ``publish_all`` and ``reconcile_all``. The baseline publishes and
reconciles service by service (what its ``reconcile_all`` did, plus its sweep of every node),
so it is timed on ``--sample`` services and scaled to the total.

Writes the "Control plane at scale" section of docs/benchmarks.md with the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEAT_S = 15.0
PAGE_TARGET_MS = 100.0
DIGEST = "5ca1e" * 12 + "abcd"


# --------------------------------------------------------------------------- one measured run
def _django(tree: Path, prefix: str):
    sys.path.insert(0, str(tree))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
    if not os.environ.get("EMS_SECRETS_KEY"):
        from cryptography.fernet import Fernet

        os.environ["EMS_SECRETS_KEY"] = Fernet.generate_key().decode()
    tmp = Path(tempfile.mkdtemp(prefix="ems-cp-bench-"))
    os.environ["EMS_DATA_DIR"] = str(tmp / "data")
    os.environ["EMS_MODEL_CACHE_DIR"] = str(tmp / "cache")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ["EMS_GATEWAY_ROUTES"] = f"{redis_url}?prefix={prefix}"
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    test = connection.settings_dict.setdefault("TEST", {})  # not the test suite's database
    test["NAME"] = f"test_{connection.settings_dict['NAME']}_cpbench"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    return connection, name, tmp


def _install_simulated():
    """The harness from the current tree, for every node (``override`` where the tree has it,
    else the same by replacing the factory)."""
    spec = importlib.util.spec_from_file_location(
        "ems_simulated_backend", ROOT / "serving" / "backends" / "simulated.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from serving import backends

    backends.reset_cache()
    backends._make = lambda node: module.SimulatedBackend(node=node.name)
    return module


def _seed(count: int, nodes: int, cache_root: Path):
    from accounts import testing
    from models_repo import bootstrap
    from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
    from serving.models import Instance, Node, ResourceGroup, Revision, Service

    bootstrap.run(demo=False, log=lambda line: None)
    testing.ensure_presets()
    owner = testing.make_tenant(name="scale")
    region = Region.objects.get(name="ap-beijing")
    group = ResourceGroup.objects.create(
        tenant=owner.tenant, name="scale", region=region, kind="dedicated"
    )
    node_rows = Node.objects.bulk_create(
        Node(
            group=group,
            name=f"sim-{i:03d}",
            backend="process",
            capacity_cpu_millicores=10**9,
            capacity_memory_mib=10**9,
        )
        for i in range(nodes)
    )
    for node in node_rows:  # the model is in every node's cache: launches fetch nothing
        (cache_root / node.name / DIGEST).mkdir(parents=True)
    config = ModelConfig.objects.create(tenant=owner.tenant, name="scale", region=region)
    version = ModelConfigVersion.objects.create(
        tenant=owner.tenant,
        config=config,
        number=1,
        runtime=RuntimeEnvironment.objects.get(tenant__isnull=True, name="angel"),
        address="cos://scale/",
        bucket="scale",
        key_prefix="scale/",
        manifest_digest=DIGEST,
        validation_status="skipped",
    )
    services = Service.objects.bulk_create(
        (
            Service(
                tenant=owner.tenant,
                name=f"s{i:05d}",
                service_id=f"ems-s{i:07d}",
                region=region,
                group=group,
                config=config,
                created_by=owner,
                status="Normal",
            )
            for i in range(count)
        ),
        batch_size=2000,
    )
    revisions = Revision.objects.bulk_create(
        (Revision(service=s, number=1, version=version, cpu_millicores=1000, memory_mib=1024)
         for s in services),
        batch_size=2000,
    )  # fmt: skip
    for service, revision in zip(services, revisions, strict=True):
        service.revision = revision
    Service.objects.bulk_update(services, ["revision"], batch_size=2000)
    from serving.backends import InstanceSpec, for_node

    rows = []
    for i, (s, r) in enumerate(zip(services, revisions, strict=True)):
        node = node_rows[i % nodes]
        spec = InstanceSpec(
            service_id=s.service_id,
            instance_id=f"{s.service_id}-000001",
            tenant_id=owner.tenant.app_id,
            runtime="angel",
            model_digest=DIGEST,
        )
        status = for_node(node).add(spec)  # running on the harness
        rows.append(
            Instance(
                tenant=owner.tenant,
                service=s,
                revision=r,
                node=node,
                instance_id=spec.instance_id,
                cpu_millicores=1000,
                memory_mib=1024,
                state="running",
                address=status.address,
                backend_id=status.backend_id,
                started_at=status.started_at,
                ready_at=status.started_at,
            )
        )
    Instance.objects.bulk_create(rows, batch_size=2000)
    per_node = {}
    for i in range(count):
        per_node[i % nodes] = per_node.get(i % nodes, 0) + 1
    for index, n in per_node.items():
        Node.objects.filter(pk=node_rows[index].pk).update(
            claimed_cpu_millicores=1000 * n, claimed_memory_mib=1024 * n
        )
    return owner, services, node_rows


def _make_busy(services, nodes) -> None:
    """These services were just deployed: their instance is pending, nothing runs yet."""
    from serving.backends import for_node
    from serving.models import Instance, Service

    ids = [s.pk for s in services]
    for index, service in enumerate(services):
        for_node(nodes[index % len(nodes)]).stop(f"{service.service_id}-000001")
    Instance.objects.filter(service_id__in=ids).update(
        state="pending", address="", backend_id="", started_at=None, ready_at=None
    )
    Service.objects.filter(pk__in=ids).update(status="Waiting")


class Counter:
    """Counts the queries of this thread's connection (lighter than capturing them)."""

    def __init__(self):
        self.n = 0

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        return execute(sql, params, many, context)


def _timed(fn):
    from django.db import connection

    counter = Counter()
    with connection.execute_wrapper(counter):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return elapsed, counter.n, result


def _pages(owner, samples: int, services: int) -> dict:
    from django.test import Client

    middle = max(1, services // 50 // 2)

    client = Client()
    client.force_login(owner.user)
    out = {}
    for label, url in (
        ("list page", "/services/"),
        ("list page, a middle page", f"/services/?page={middle}"),
        ("API list", "/api/v1/services/"),
        ("API list, a middle page", f"/api/v1/services/?page={middle}"),
    ):
        client.get(url, secure=True)  # warm
        times, cpu = [], []
        for _ in range(samples):
            start, start_cpu = time.perf_counter(), time.process_time()
            res = client.get(url, secure=True)
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
            assert res.status_code == 200, (url, res.status_code)
        times.sort()
        out[label] = {
            "p50": statistics.median(times),
            "p95": times[min(len(times) - 1, int(len(times) * 0.95))],
            "cpu": statistics.median(cpu),  # this process's CPU time: less moved by the load
        }
    return out


def measure(args) -> dict:
    prefix = f"ems:cpbench:{os.getpid()}:"
    connection, name, tmp = _django(Path(args.tree), prefix)
    result = {"services": args.services, "nodes": args.nodes}
    try:
        _install_simulated()
        from django.conf import settings

        from serving import publish, reconciler
        from serving.models import Instance, Service

        fleet = hasattr(publish, "publish_all")  # the current tree; else per-service loops
        start = time.perf_counter()
        owner, services, nodes = _seed(args.services, args.nodes, settings.EMS_MODEL_CACHE_DIR)
        with connection.cursor() as cursor:  # what autovacuum does after such a load
            cursor.execute("ANALYZE")
        result["seed_s"] = time.perf_counter() - start
        store = publish.store()
        sample = services if fleet else services[: args.sample]
        result["sample"] = len(sample)
        result["threads"] = getattr(settings, "EMS_SERVING_RECONCILE_THREADS", 1)

        def publish_every():
            if fleet:
                return publish.publish_all()
            for service in sample:
                publish.publish_service(service)

        def steady_pass():
            if fleet:
                return reconciler.reconcile_all()
            for service in sample:  # what the old reconcile_all did per service
                reconciler.reconcile(service.pk)

        for label in ("empty store", "unchanged"):
            result[f"publish_{label}"] = _record(label, *_timed(publish_every))
        assert len(store.all()) == len(sample)
        result["pass_steady"] = _record("steady pass", *_timed(steady_pass))
        if not fleet:  # and the sweep of every node that ended it
            from serving.models import Node
            from serving.reconciler import sweep_node

            def sweep():
                for node in Node.objects.filter(is_active=True):
                    sweep_node(node)

            result["sweep"] = _record("sweep", *_timed(sweep))
        busy = services[: min(args.busy, len(sample))]
        _make_busy(busy, nodes)
        result["busy"] = len(busy)
        for label in ("launch", "healthy"):

            def busy_pass():
                if fleet:
                    return reconciler.reconcile_all()
                for service in busy:
                    reconciler.reconcile(service.pk)

            result[f"pass_{label}"] = _record(f"{len(busy)} busy: {label}", *_timed(busy_pass))
        assert Instance.objects.filter(state="running").count() == args.services
        assert Service.objects.filter(status="Normal").count() == args.services
        result["pages"] = _pages(owner, args.samples, args.services)
        node = nodes[0]
        start = time.perf_counter()
        for _ in range(50):  # what one committed write (its fsync) costs here, now
            type(node).objects.filter(pk=node.pk).update(is_active=True)
        result["commit_ms"] = (time.perf_counter() - start) * 1000 / 50
        result["load"] = os.getloadavg()[0]
    finally:
        from serving import publish

        try:
            for key in publish.store().r.scan_iter(f"{prefix}*"):
                publish.store().r.delete(key)
        finally:
            connection.creation.destroy_test_db(name, verbosity=0)
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _record(label: str, seconds: float, queries: int, _result) -> dict:
    print(f"  {label}: {seconds:.2f} s, {queries} queries", file=sys.stderr)
    return {"s": seconds, "queries": queries}


# --------------------------------------------------------------------------- the two runs
def _run(tree: Path, args) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure",
        "--tree", str(tree),
        "--services", str(args.services),
        "--nodes", str(args.nodes),
        "--sample", str(args.sample),
        "--busy", str(args.busy),
        "--samples", str(args.samples),
        "--out", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=tree, timeout=3600)
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink()


def _cell(run: dict | None, key: str, scale: float = 1.0, extra: float = 0.0) -> str:
    """``s (queries)``; a baseline timed on a sample is scaled to the whole (``≈``)."""
    if run is None or key not in run:
        return "-"
    row = run[key]
    if scale == 1.0 and not extra:
        return f"{row['s']:.2f} s ({row['queries']:,} queries)"
    seconds, queries = row["s"] * scale + extra, row["queries"] * scale
    return f"≈ {seconds:.1f} s (≈ {queries:,.0f} queries)"


def report(base: dict | None, cur: dict, args) -> str:
    from bench.report import markdown_table

    n, busy = cur["services"], cur["busy"]
    rows = []

    def add(label, base_text, key, target=None):
        now = cur[key]["s"]
        verdict = "-" if target is None else ("met" if now <= target else "NOT met")
        limit = f"≤ {target:.0f} s" if target else "-"
        rows.append([label, base_text, _cell(cur, key), limit, verdict])

    whole = n / base["sample"] if base else 1.0
    sweep = base["sweep"]["s"] if base else 0.0
    add(
        f"route publication, {n:,} routes into an empty store",
        _cell(base, "publish_empty store", whole),
        "publish_empty store",
        BEAT_S,
    )
    add("route publication, nothing changed", _cell(base, "publish_unchanged", whole),
        "publish_unchanged", BEAT_S)  # fmt: skip
    add(
        f"reconcile pass over {n:,} services, nothing to do (beat's, every 15 s)",
        _cell(base, "pass_steady", whole, sweep),
        "pass_steady",
        BEAT_S,
    )
    for key, what in (("pass_launch", "launching"), ("pass_healthy", "becoming Normal")):
        base_text = "-"
        if base:  # the busy ones timed, the others as quiet as in the steady pass
            per_busy = base[key]["s"] / base["busy"]
            per_quiet = base["pass_steady"]["s"] / base["sample"]
            seconds = per_busy * busy + per_quiet * (n - busy) + sweep
            base_text = f"≈ {seconds:.1f} s ({per_busy * 1000:.0f} ms per busy service)"
        add(f"reconcile pass, {busy:,} of {n:,} services {what}", base_text, key)
        rows[-1][2] = (  # the passes' own queries run on their threads' connections
            f"{cur[key]['s']:.2f} s ({cur[key]['s'] / busy * 1000:.0f} ms per busy service, "
            f"{cur.get('threads', 1)} at a time)"
        )
    for label, page in cur["pages"].items():
        old = base["pages"].get(label) if base else None
        rows.append(
            [
                label,
                f"p50 {old['p50']:.0f} ms, p95 {old['p95']:.0f} ms" if old else "-",
                f"p50 {page['p50']:.0f} ms, p95 {page['p95']:.0f} ms"
                + (f" (CPU {page['cpu']:.0f} ms)" if "cpu" in page else ""),
                f"p50 ≤ {PAGE_TARGET_MS:.0f} ms",
                "met" if page["p50"] <= PAGE_TARGET_MS else "NOT met",
            ]
        )
    head = ["what", f"baseline ({args.baseline_ref})" if base else "baseline", "current",
            "target", ""]  # fmt: skip
    loads = f"{base['load']:.2f} (baseline), " if base else ""
    when = (
        " (two invocations minutes apart, `--report-from`)" if args.report_from else " in this run"
    )
    sampled = (
        f"The baseline's passes and publications are per service, so they were timed on "
        f"{base['sample']} services and scaled to {n:,} (≈; plus its sweep of every node, "
        f"{sweep:.2f} s); its pages ran on all {n:,}. "
        if base
        else ""
    )
    per_busy = [cur[k]["s"] / busy * 1000 for k in ("pass_launch", "pass_healthy")]
    threads = cur.get("threads", 8)
    notes = (
        "\n\n- The pass over services with nothing to do and the publication cost a fixed "
        f"number of queries whatever the count ({cur['pass_steady']['queries']} and "
        f"{cur['publish_unchanged']['queries']} here; pinned by "
        "`tests/serving/test_sv_scale.py`): one listing per node, two reads of every live "
        "service and instance, the quiet check in Python, one read and one pipelined write of "
        "the route store.\n"
        "- A service with work still gets its full pass, under its lease: the lease taken and "
        "dropped, each step's writes committed (launch: 3 commits; healthy: 4), the backend "
        f"called live. A committed write cost {cur['commit_ms']:.1f} ms here (its fsync, at "
        f"this load); the passes run {threads} at a time. So {busy:,} services deployed at "
        f"once cost {per_busy[0]:.0f} + {per_busy[1]:.0f} ms each over two passes, and a pass "
        f"in which all {n:,} services need work at once (a mass redeploy, a restored database) "
        f"takes ≈ {per_busy[0] * n / 1000:.0f} s on this machine — more than a beat period; "
        "what is left is picked up by the next pass and by the services' own reconcile tasks, "
        "which workers run in parallel.\n"
        "- The list page and the API read a page in a fixed number of queries (pinned by the "
        "same test): the count, the page's keys on the index `service_list` (tenant, newest "
        "first, live only), then only those 50 rows with their joins, and (API) one count of "
        "their running instances. What is left is Python — middleware, the door's policy "
        "check, the template or the serializer of 50 rows — and, on 2 cores shared at this "
        "load, the share of a core the request gets."
    )
    return (
        f"Written by `python bench/controlplane_bench.py` on PostgreSQL and Redis: {n:,} "
        f"services (1 replica each) of one tenant on {cur['nodes']} nodes of the scale harness "
        "(`serving.backends.simulated`: instances start and stop instantly, in memory — what is "
        "measured is the control plane: queries, route-store round trips, Python). Baseline and "
        f"current ran one after the other{when}, each in its own process and throw-away "
        f"database. {sampled}Page times are Django test-client requests (server time: "
        f"middleware, queries, template; {args.samples} requests each; CPU: the portal process's "
        "own CPU time per request, p50 — the database's is not in it). Load average at the end "
        f"of each run: {loads}{cur['load']:.2f} (current) on 2 cores shared with other work.\n\n"
        + markdown_table(head, rows)
        + notes
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--baseline-ref", default="06cddd1")
    parser.add_argument(
        "--sample", type=int, default=300, help="baseline: services timed one by one (× total)"
    )
    parser.add_argument("--busy", type=int, default=500, help="services deployed at once")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the doc")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--report-from", nargs=2, metavar=("BASELINE", "CURRENT"),
                        help="write the section from two --measure JSON files")  # fmt: skip
    args = parser.parse_args()
    if args.measure:
        Path(args.out).write_text(json.dumps(measure(args)))
        return
    if args.report_from:  # two runs' JSON (baseline, current) from earlier --measure runs
        base, cur = (json.loads(Path(p).read_text()) for p in args.report_from)
        sys.path.insert(0, str(ROOT))
        body = report(base, cur, args)
        if not args.no_write:
            from bench.report import write_section

            write_section("Control plane at scale", body)
        print(body)
        return
    base = None
    if not args.no_baseline:
        tree = Path(tempfile.mkdtemp(prefix="ems-cp-baseline-"))
        try:
            archive = subprocess.run(
                ["git", "archive", args.baseline_ref], cwd=ROOT, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            print(f"baseline {args.baseline_ref}:", file=sys.stderr)
            base = _run(tree, args)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    print("current:", file=sys.stderr)
    cur = _run(ROOT, args)
    sys.path.insert(0, str(ROOT))
    body = report(base, cur, args)
    if not args.no_write:
        from bench.report import write_section

        write_section("Control plane at scale", body)
    print(body)


if __name__ == "__main__":
    main()
