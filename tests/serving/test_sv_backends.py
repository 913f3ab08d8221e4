"""The backends against the real thing: runtime server processes and Docker containers."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from serving.backends.base import (
    EXITED,
    LABEL_SERVICE,
    MISSING,
    RUNNING,
    BackendError,
    InstanceSpec,
)
from serving.backends.process import ProcessBackend, _proc_stat
from serving.modelcache import ModelCache
from tests.serving.helpers import angel_model, build_image, get_json, open_tmp, wait_for


def _spec(runtime="angel", image="", **kwargs) -> InstanceSpec:
    suffix = uuid.uuid4().hex[:6]
    return InstanceSpec(
        service_id=f"ems-t{suffix}",
        instance_id=f"ems-t{suffix}-a1b2c3",
        tenant_id="1000000001",
        runtime=runtime,
        model_digest="ab" * 32,
        image=image,
        **kwargs,
    )


@pytest.fixture
def cache_dir():
    path = open_tmp()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def angel_cached(cache_dir):
    cache = ModelCache(cache_dir / "cache")
    return cache.ensure("ab" * 32, lambda dest: shutil.copytree(angel_model(), dest))


# --- process backend ------------------------------------------------------------------------
@pytest.fixture
def process_backend(cache_dir):
    backend = ProcessBackend(node=f"t-{uuid.uuid4().hex[:6]}", state_dir=cache_dir / "state")
    yield backend
    for status in backend.list():
        backend.stop(status.instance_id, grace=0)


def test_process_backend_runs_inspects_and_stops_a_runtime(process_backend, angel_cached):
    spec = _spec(cpu_millicores=500, memory_mib=512)
    status = process_backend.start(spec, str(angel_cached))
    assert status.state == RUNNING and status.address.startswith("http://127.0.0.1:")
    assert status.started_at is not None
    wait_for(
        lambda: process_backend.health(process_backend.inspect(spec.instance_id)),
        timeout=60,
        what="AVAILABLE",
    )
    body = get_json(f"{status.address}/v1/models/m")
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    listed = process_backend.list({LABEL_SERVICE: spec.service_id})
    assert [s.instance_id for s in listed] == [spec.instance_id]
    assert process_backend.list({LABEL_SERVICE: "ems-other"}) == []
    stats = process_backend.stats(spec.instance_id)
    assert stats.memory_bytes and stats.memory_bytes > 1024 * 1024
    assert stats.memory_limit_bytes == 512 * 1024 * 1024 and stats.cpu_percent is not None
    # the runtime's own lines, captured by the backend: where it listens, the model it loaded
    logs = wait_for(
        lambda: (text := process_backend.logs(spec.instance_id)) and "AVAILABLE (load" in text
        and text,
        timeout=30,
        what="the runtime's log",
    )  # fmt: skip
    assert f"angel runtime listening on {status.address}" in logs, logs
    assert "model m version 6 AVAILABLE" in logs, logs
    pid = int(status.backend_id.split("-")[1])
    final = process_backend.stop(spec.instance_id, grace=5)
    assert final.finished_at is not None and final.finished_at >= final.started_at
    # gone, or a zombie its (detached) parent has not reaped yet: not running either way
    stat = _proc_stat(pid)
    assert stat is None or stat[0] in ("Z", "X"), stat
    assert process_backend.inspect(spec.instance_id).state == MISSING
    assert process_backend.stop(spec.instance_id) is None


def test_process_backend_notices_a_crash_and_guards_against_pid_reuse(
    process_backend, angel_cached
):
    spec = _spec()
    status = process_backend.start(spec, str(angel_cached))
    pid = int(status.backend_id.split("-")[1])
    os.kill(pid, 9)
    crashed = wait_for(
        lambda: (s := process_backend.inspect(spec.instance_id)).state == EXITED and s,
        timeout=10,
        what="the crash",
    )
    assert crashed.exit_code == -9 and crashed.finished_at is not None
    assert "exited" in crashed.message
    # a state file whose create time does not match is a different process: not ours
    spec2 = _spec()
    status2 = process_backend.start(spec2, str(angel_cached))
    state = process_backend._read(spec2.instance_id)
    state["create_time"] = state["create_time"] - 1
    process_backend._write(spec2.instance_id, state)
    assert process_backend.inspect(spec2.instance_id).state == EXITED
    state["create_time"] += 1
    process_backend._write(spec2.instance_id, state)
    assert process_backend.inspect(spec2.instance_id).state == RUNNING
    assert status2.instance_id == spec2.instance_id


def test_process_backend_refuses_gpus(process_backend, angel_cached):
    with pytest.raises(BackendError, match="GPU"):
        process_backend.start(_spec(gpus=1), str(angel_cached))
    assert process_backend.enforces_limits is False


# --- docker backend -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def angel_image(docker_client):
    return build_image("angel")


@pytest.fixture
def docker_backend(docker_client):
    from serving.backends.docker import DockerBackend

    backend = DockerBackend(node=f"t-{uuid.uuid4().hex[:6]}", client=docker_client)
    yield backend
    for container in docker_client.containers.list(
        all=True, filters={"label": f"ems.node={backend.node}"}
    ):
        container.remove(force=True)
    for network in docker_client.networks.list(names=[backend.network_name]):
        network.remove()


@pytest.mark.e2e
def test_docker_backend_hardened_container_lifecycle(
    docker_backend, docker_client, angel_image, angel_cached
):
    spec = _spec(image=angel_image, cpu_millicores=500, memory_mib=512)
    status = docker_backend.start(spec, str(angel_cached))
    assert status.state == RUNNING and status.address.startswith("http://127.0.0.1:")
    wait_for(
        lambda: docker_backend.health(docker_backend.inspect(spec.instance_id)),
        timeout=90,
        what="AVAILABLE",
    )
    container = docker_client.containers.get(spec.instance_id)
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True and host["PidsLimit"] > 0
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 512 * 1024 * 1024
    assert container.labels["ems.service"] == spec.service_id
    assert container.labels["ems.tenant"] == "1000000001"
    mount = next(m for m in container.attrs["Mounts"] if m["Destination"] == "/models/m")
    assert mount["RW"] is False
    assert host["PortBindings"]["8501/tcp"][0]["HostIp"] == "127.0.0.1"
    # no route to the portal's database or Redis: neither loopback nor the bridge's gateway
    network = docker_client.networks.get(docker_backend.network_name)
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    probe = (
        "import socket,sys\n"
        f"for h,p in [('{gateway}',5432),('{gateway}',6379),('127.0.0.1',5432)]:\n"
        "    s=socket.socket(); s.settimeout(2)\n"
        "    try: s.connect((h,p)); print('OPEN',h,p)\n"
        "    except OSError: pass\n"
    )
    result = container.exec_run(["/opt/ems/bin/python", "-c", probe], user="10001")
    assert b"OPEN" not in result.output, result.output
    stats = docker_backend.stats(spec.instance_id)
    assert stats.memory_limit_bytes == 512 * 1024 * 1024 and stats.memory_bytes > 0
    assert [s.instance_id for s in docker_backend.list({LABEL_SERVICE: spec.service_id})] == [
        spec.instance_id
    ]
    final = docker_backend.stop(spec.instance_id, grace=5)
    assert final.state == EXITED and final.finished_at >= final.started_at
    assert docker_backend.inspect(spec.instance_id).state == MISSING


@pytest.mark.e2e
def test_docker_backend_reports_a_crash_with_exact_times_and_logs(
    docker_backend, docker_client, angel_image, cache_dir
):
    broken = ModelCache(cache_dir / "cache").ensure(
        "cd" * 32, lambda dest: (dest.mkdir(), (dest / "garbage.txt").write_text("nope"))
    )
    spec = _spec(image=angel_image)
    docker_backend.start(spec, str(broken))
    crashed = wait_for(
        lambda: (s := docker_backend.inspect(spec.instance_id)).state == EXITED and s,
        timeout=60,
        what="the runtime to exit",
    )
    assert crashed.finished_at > crashed.started_at and crashed.exit_code != 0
    assert docker_backend.logs(spec.instance_id, tail=20).strip()
