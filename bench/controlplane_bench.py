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
        from bench.controlplane_report import report

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
    from bench.controlplane_report import report

    body = report(base, cur, args)
    if not args.no_write:
        from bench.report import write_section

        write_section("Control plane at scale", body)
    print(body)


if __name__ == "__main__":
    main()
