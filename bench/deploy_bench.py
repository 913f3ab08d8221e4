"""Deploy -> first successful prediction through the gateway, on Docker, image cached.

    python bench/deploy_bench.py [--rounds 2]

A throw-away portal (SQLite and a local object store in a temporary folder, routes in a file
store) with a real gateway process. Per round: a fresh resource group on the local Docker
engine (so the node's model cache starts cold), the flower classifier (tfserving, from
``python -m runtimes.examples``) deployed with auth on; a client posts ``flower.json`` with the
service's token through the gateway every 50 ms from the moment ``service_deploy`` is called
until the first 200 with ``roses``. The reconciler runs in this process at two cadences: the
worker's (a pass, then again 2 s later while instances start: ``serving.tasks``) and a tight
0.1 s loop (what bounds the pipeline itself). Writes the "Deploy to first prediction" section
of docs/benchmarks.md. Needs Docker and the tfserving image (``runtimes/build-images
tfserving``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_S = 10.0


def _setup(tmp: Path, gateway_url: str) -> None:
    (tmp / "data").mkdir(mode=0o755)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="1",
        EMS_DATA_DIR=str(tmp / "data"),
        EMS_STORAGE_BACKEND="local",
        EMS_GATEWAY_ROUTES=f"file://{tmp / 'routes.json'}",
        EMS_GATEWAY_URL=gateway_url,
        EMS_MODEL_CACHE_DIR=str(tmp / "cache"),
    )
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("ems_bootstrap", verbosity=0)


def _first_prediction(url: str, token: str, body: bytes, stop: threading.Event, out: dict):
    headers = {"Content-Type": "application/json", "x-Auth-Token": token}
    while not stop.is_set():
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                data = json.loads(answer.read())
            if data["predictions"][0]["classes"] == "roses":
                out["at"] = time.perf_counter()
                return
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            pass
        time.sleep(0.05)


def one_round(owner, version, cadence: float, name: str) -> dict:
    from serving import access, reconciler, services
    from serving.services import InstanceSize
    from tests.serving.conftest import cleanup_group, make_group

    group = make_group(tenant=owner.tenant, backend="docker", cpu=2000, memory=4096)
    body = (Path(os.environ["EMS_BENCH_EXAMPLES"]) / "flower" / "flower.json").read_bytes()
    result, stop = {}, threading.Event()
    try:
        started = time.perf_counter()
        service = services.service_deploy(
            actor=owner.membership,
            version=version,
            group=group,
            name=name,
            size=InstanceSize(cpu_millicores=1000, memory_mib=2048),
            auth_enabled=True,
        )
        token = access.service_token_reveal(actor=owner.membership, service=service)
        url = access.addresses(service)["predict_url"]
        client = threading.Thread(
            target=_first_prediction, args=(url, token, body, stop, result), daemon=True
        )
        client.start()
        marks = {}
        while "at" not in result and time.perf_counter() - started < 120:
            state = reconciler.reconcile(service.pk)
            service.refresh_from_db()
            for instance in service.instances.all():
                if instance.started_at and "started" not in marks:
                    marks["started"] = time.perf_counter()
                if instance.ready_at and "ready" not in marks:
                    marks["ready"] = time.perf_counter()
            if state == reconciler.IDLE:
                client.join(0.05)
            else:
                client.join(cadence)
        stop.set()
        client.join(5)
        if "at" not in result:
            raise RuntimeError(f"no prediction within 120 s: {service.status} {service.message}")
        return {
            "total": result["at"] - started,
            "started": marks.get("started", result["at"]) - started,
            "ready": marks.get("ready", result["at"]) - started,
        }
    finally:
        stop.set()
        cleanup_group(group)
        import docker

        client = docker.from_env()
        for node in group.nodes.all():
            for network in client.networks.list(names=[f"ems-runtime-{node.name}"]):
                network.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from bench.report import markdown_table, write_section
    from tests.gateway.conftest import GatewayProcess

    tmp = Path(tempfile.mkdtemp(prefix="ems-deploy-bench-"))
    tmp.chmod(0o755)
    examples = tmp / "examples"
    subprocess.run([sys.executable, "-m", "runtimes.examples", str(examples)], check=True)
    os.environ["EMS_BENCH_EXAMPLES"] = str(examples)
    gateway = GatewayProcess(f"file://{tmp / 'routes.json'}")
    try:
        _setup(tmp, gateway.url)
        from accounts.testing import make_tenant
        from tests.serving.conftest import make_version
        from tests.serving.helpers import build_image

        build_image("tfserving")  # cached: only checks the tag exists
        owner = make_tenant()
        owner.membership = owner
        version = make_version(owner, examples / "flower" / "1", name="flower", runtime="tfserving")
        rows = []
        for cadence, label in ((2.0, "worker cadence (2 s re-check)"), (0.1, "0.1 s passes")):
            runs = [
                one_round(owner, version, cadence, f"b{int(cadence * 10)}r{i}")
                for i in range(args.rounds)
            ]
            best = min(runs, key=lambda r: r["total"])
            rows.append(
                [
                    label,
                    args.rounds,
                    f"{best['started']:.2f}",
                    f"{best['ready']:.2f}",
                    f"{best['total']:.2f}",
                    f"{max(r['total'] for r in runs):.2f}",
                    "met"
                    if best["total"] <= TARGET_S
                    else f"missed by {best['total'] - TARGET_S:.1f} s",
                ]
            )
            print(label, runs, flush=True)
    finally:
        gateway.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    table = markdown_table(
        [
            "reconciler",
            "rounds",
            "container started s",
            "AVAILABLE seen by a pass s",
            "first prediction s (best)",
            "worst s",
            f"target ≤ {TARGET_S:.0f} s",
        ],
        rows,
    )
    body = f"""Written by `python bench/deploy_bench.py` on the local Docker engine: from the
`service_deploy` call (auth on) to the first `200` with `roses` for `flower.json`, sent with the
service's token through a real gateway process (the client retries every 50 ms). The flower
classifier (TF SavedModel, `tfserving` runtime, 1 core / 2 GiB); the image is cached, each
round uses a fresh node, so the model is copied from object storage into a cold model cache.
Times are seconds from the deploy call. "worker cadence" runs the reconcile passes as
`serving.tasks.reconcile_service` schedules them (again 2 s after a pass that left instances
starting); "0.1 s passes" shows what the pipeline itself needs. Load average at the end: {load:.2f}
on 2 shared cores.

{table}

What bounds it: the runtime container's start and the TensorFlow model load and warm-up (the
gap between "container started" and "AVAILABLE seen by a pass"); at the worker's cadence, up to
2 s more until the next pass sees `AVAILABLE` and publishes the route. Route propagation to the
gateway (file store: ≤ 50 ms poll) is measured in the Gateway section.
"""
    write_section("Deploy to first prediction", body)
    print(table)


if __name__ == "__main__":
    main()
