"""Fixtures of the serving tests: a tenant's config versions of the Angel test model, resource
groups with a process (or Docker) node, and a reconcile loop that waits for a status."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayProcess
from tests.serving.helpers import angel_model, build_image, open_tmp

ANGEL_VERSION_DIR = "6"


@pytest.fixture
def serving_env(db, settings):
    """Storage, model cache and process state in a fresh folder uid 10001 can read."""
    from models_repo import bootstrap

    root = open_tmp()
    settings.EMS_STORAGE_BACKEND = "local"
    settings.EMS_STORAGE_ROOT = root / "storage"
    settings.EMS_MODEL_CACHE_DIR = root / "cache"
    settings.DATA_DIR = root / "data"
    settings.EMS_SERVING_STOP_GRACE = 3
    settings.EMS_GATEWAY_ROUTES = f"file://{root / 'routes.json'}"
    settings.EMS_GATEWAY_DRAIN_TIMEOUT = 10
    bootstrap.run(demo=False, log=lambda line: None)
    yield root
    from serving.backends import reset_cache
    from serving.publish import reset_stores

    reset_cache()
    reset_stores()
    shutil.rmtree(root, ignore_errors=True)


def seed(tenant, source: Path, prefix: str) -> str:
    from tests.models_repo.conftest import seed_folder

    _, address = seed_folder(tenant, source, prefix=prefix)
    return address


def make_version(owner, source: Path, *, config=None, name="angel-lr", runtime="angel"):
    from models_repo import services
    from models_repo.models import Region, RuntimeEnvironment

    runtime_env = RuntimeEnvironment.objects.get(tenant__isnull=True, name=runtime)
    address = seed(owner.tenant, source, prefix=f"{uuid.uuid4().hex[:8]}/")
    if config is None:
        config = services.model_config_create(
            actor=owner.membership,
            name=name,
            region=Region.objects.get(name="ap-beijing"),
            runtime=runtime_env,
            address=address,
        )
        return config.versions.get(number=1)
    return services.model_config_version_create(
        actor=owner.membership, config=config, runtime=runtime_env, address=address
    )


def make_broken_version(owner, config, tmp: Path):
    """A version whose folder passed no validation (written directly): it fails to load."""
    from models_repo.manifest import folder_manifest
    from models_repo.models import ModelConfigVersion, RuntimeEnvironment
    from tests.models_repo.conftest import tenant_store

    source = tmp / "broken" / ANGEL_VERSION_DIR
    source.mkdir(parents=True)
    (source / "README").write_text("this is not an Angel model\n")
    prefix = f"{uuid.uuid4().hex[:8]}/"
    address = seed(owner.tenant, tmp / "broken", prefix=prefix)
    bucket = f"models-{owner.tenant.app_id}"
    manifest = folder_manifest(tenant_store(owner.tenant), bucket, prefix)
    last = config.versions.order_by("-number").first().number
    from django.db.models import F

    from models_repo.models import ModelConfig

    ModelConfig.objects.filter(pk=config.pk).update(last_version=F("last_version") + 1)
    return ModelConfigVersion.objects.create(
        tenant=owner.tenant,
        config=config,
        number=last + 1,
        runtime=RuntimeEnvironment.objects.get(tenant__isnull=True, name="angel"),
        address=address,
        bucket=bucket,
        key_prefix=prefix,
        manifest=manifest.as_json(),
        manifest_digest=manifest.digest,
        total_size=manifest.total_size,
        validation_status=ModelConfigVersion.SKIPPED,
    )


@pytest.fixture
def angel_version(owner, serving_env):
    return make_version(owner, angel_model() / ANGEL_VERSION_DIR)


def make_group(*, tenant=None, backend="process", cpu=4000, memory=8192, gpus=0, nodes=1):
    from models_repo.models import Region
    from serving.models import Node, ResourceGroup

    suffix = uuid.uuid4().hex[:6]
    group = ResourceGroup.objects.create(
        tenant=tenant,
        name=f"g-{suffix}",
        region=Region.objects.get(name="ap-beijing"),
        kind=ResourceGroup.DEDICATED if tenant else ResourceGroup.PUBLIC,
    )
    for index in range(nodes):
        Node.objects.create(
            group=group,
            name=f"n-{suffix}-{index}",
            backend=backend,
            capacity_cpu_millicores=cpu,
            capacity_memory_mib=memory,
            capacity_gpus=gpus,
        )
    return group


def cleanup_group(group) -> None:
    from serving.backends import for_node

    for node in group.nodes.all():
        backend = for_node(node)
        for status in backend.list():
            backend.stop(status.instance_id, grace=0)


@pytest.fixture
def dedicated(owner, serving_env):
    group = make_group(tenant=owner.tenant)
    yield group
    cleanup_group(group)


def converge(service, until, *, timeout: float = 90.0, what: str = ""):
    """Run reconcile passes (as the worker would) until ``until(service)`` holds."""
    from serving import reconciler

    deadline = time.monotonic() + timeout
    while True:
        reconciler.reconcile(service.pk)
        service.refresh_from_db()
        if until(service):
            return service
        if time.monotonic() > deadline:
            events = "\n".join(str(e) for e in service.events.order_by("created_at", "id"))
            raise AssertionError(
                f"{what or 'condition'} not reached: status {service.status} "
                f"({service.message})\n{events}"
            )
        time.sleep(0.25)


def status_is(*wanted):
    return lambda service: service.status in wanted


# --- Docker (e2e) ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def examples():
    out = open_tmp("ems-sv-examples-")
    subprocess.run(
        [sys.executable, "-m", "runtimes.examples", str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    yield out
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def images(docker_client):
    return {runtime: build_image(runtime) for runtime in ("angel", "tfserving")}


@pytest.fixture
def docker_group(owner, serving_env, docker_client, images):
    group = make_group(tenant=owner.tenant, backend="docker", cpu=2000, memory=8192)
    yield group
    cleanup_group(group)
    node = group.nodes.get()
    for network in docker_client.networks.list(names=[f"ems-runtime-{node.name}"]):
        network.remove()


@pytest.fixture
def gateway(serving_env, settings):
    """A real gateway process reading the routes the control plane publishes."""
    gw = GatewayProcess(settings.EMS_GATEWAY_ROUTES)
    settings.EMS_GATEWAY_URL = gw.url
    yield gw
    gw.stop()


@pytest.fixture
def patient_gateway(serving_env, settings):
    """A real gateway that waits longer before it ejects a slow instance (probe after 5 s
    without an answer byte, eject after 10 s): on a loaded 2-core machine its default passive
    health (1 s, 2 s) can eject every instance of a starved runtime, while what the node tests
    measure is the control plane's moves (docs/gateway.md has the passive health)."""
    gw = GatewayProcess(
        settings.EMS_GATEWAY_ROUTES, EMS_GATEWAY_PROBE_AFTER="5", EMS_GATEWAY_PROBE_TIMEOUT="10"
    )
    settings.EMS_GATEWAY_URL = gw.url
    yield gw
    gw.stop()
