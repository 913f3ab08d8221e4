"""The Docker backend: one runtime container per instance, through the docker SDK.

Hardening of every container (DESIGN.md, "Runtime containers"): the image's non-root user
(10001), every capability dropped, ``no-new-privileges``, a pids limit, a read-only root
filesystem with a small ``/tmp`` tmpfs, CPU (``nano_cpus``) and memory limits (swap = memory, so
no swap), the model folder mounted read-only at ``/models/m``, GPUs as device requests.

Network: one bridge per node, ``ems-runtime-<node>``, with inter-container traffic off and IP
masquerading off: containers cannot talk to each other nor reach any other network (so no route
to a database or Redis on another host), and the published port still works (an ``internal``
network would drop it: Docker does not publish ports of internal networks). The host itself
stays reachable on the bridge's gateway address, so services on the Docker host must listen on
loopback only (PostgreSQL and Redis do by default) or be firewalled in the ``DOCKER-USER`` /
``INPUT`` chains; docs/serving.md says so and the e2e test checks it.

The port is published on ``publish_host`` (127.0.0.1 by default: only the gateway on the same
host reaches instances); ``advertise_host`` is the host name callers use for a remote node.

Models: on the local engine the node's cache folder is bind-mounted; an engine on another host
(``tcp://`` with TLS: ``tls`` holds the CA, client certificate and key as PEM) gets each model
in a verified volume filled through the engine's API (``serving.backends.volumes``).
"""

from __future__ import annotations

import logging
import shutil

from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest

import docker
from serving import faults
from serving.backends import volumes
from serving.backends.base import (
    CONTAINER_PORT,
    CREATED,
    EXITED,
    LABEL_INSTANCE,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_TENANT,
    MISSING,
    MODEL_MOUNT,
    MODEL_NAME,
    PAUSED,
    RUNNING,
    Backend,
    BackendError,
    InstanceSpec,
    InstanceStats,
    InstanceStatus,
    parse_time,
)
from serving.backends.engine import engine_errors, tls_files

log = logging.getLogger(__name__)

PIDS_LIMIT = 512
TMPFS = {"/tmp": "rw,nosuid,nodev,size=256m,mode=1777"}  # noqa: S108 - inside the container
RUNTIME_USER = "10001:10001"
API_VERSION = "1.41"


def _transient(exc: Exception) -> bool:
    status = getattr(exc, "status_code", None)
    return status is None or (status >= 500 and status not in (501,))


class DockerBackend(Backend):
    name = "docker"
    enforces_limits = True

    def __init__(
        self,
        *,
        node: str,
        base_url: str = "",
        publish_host: str = "127.0.0.1",
        advertise_host: str = "",
        client=None,
        tls: dict | None = None,
        model_volumes: bool | None = None,
        timeout: int = 60,
    ):
        super().__init__(node=node)
        self._tls_dir = None
        if client is not None:
            self.client = client
        elif base_url:
            # a fixed API version (every engine since 20.10 speaks 1.41): no version query
            # when the client is made, so an engine that is down fails the call, not this
            try:
                self.client = docker.DockerClient(
                    base_url=base_url,
                    timeout=timeout,
                    tls=self._tls_config(tls),
                    version=API_VERSION,
                )
            except Exception:  # a malformed URL or TLS files: leave no key on disk
                self._remove_tls()
                raise
            # exactly the node's CA and no proxy: never REQUESTS_CA_BUNDLE / HTTPS_PROXY
            self.client.api.trust_env = False
        else:
            self.client = docker.from_env(timeout=timeout)
        self.publish_host = publish_host
        self.advertise_host = advertise_host or publish_host
        self.network_name = f"ems-runtime-{node}"
        if model_volumes is None:
            model_volumes = base_url.startswith(("tcp://", "ssh://"))
        self.model_volumes = model_volumes

    def _tls_config(self, tls: dict | None):
        """The client's TLS files in a private folder ``close`` removes; None: plain."""
        if not tls:
            return None
        self._tls_dir, config = tls_files(self.node, tls)
        return config

    # --- the engine ---------------------------------------------------------------------------
    def engine_info(self) -> dict:
        """``docker info``: NCPU, MemTotal (bytes), ServerVersion, Name …; raises BackendError."""
        try:
            return self.client.info()
        except Exception as exc:  # APIError, connection refused, TLS errors, timeouts
            raise BackendError(f"engine: {exc}", transient=True) from exc

    def ping(self) -> None:
        try:
            self.client.ping()
        except Exception as exc:
            raise BackendError(f"engine: {exc}", transient=True) from exc

    # --- network ------------------------------------------------------------------------------
    @engine_errors
    def ensure_network(self) -> str:
        try:
            self.client.networks.get(self.network_name)
        except NotFound:
            try:
                self.client.networks.create(
                    self.network_name,
                    driver="bridge",
                    labels={"ems.managed": "1", LABEL_NODE: self.node},
                    options={
                        "com.docker.network.bridge.enable_icc": "false",
                        "com.docker.network.bridge.enable_ip_masquerade": "false",
                    },
                )
            except APIError as exc:  # a concurrent creator won the race
                if getattr(exc, "status_code", None) != 409:
                    raise BackendError(f"cannot create network: {exc}", transient=True) from exc
        return self.network_name

    # --- lifecycle ----------------------------------------------------------------------------
    @engine_errors
    def start(self, spec: InstanceSpec, model_dir: str) -> InstanceStatus:
        if not spec.image:
            raise BackendError(f"no image for runtime {spec.runtime}")
        network = self.ensure_network()
        if self.model_volumes:
            model = volumes.ensure_volume(
                self.client,
                node=self.node,
                digest=spec.model_digest,
                model_dir=str(model_dir),
                image=spec.image,
            )
        else:
            model = str(model_dir)
        kwargs = dict(
            image=spec.image,
            command=[
                "--runtime",
                spec.runtime,
                "--model-dir",
                MODEL_MOUNT,
                "--model-name",
                MODEL_NAME,
                "--port",
                str(CONTAINER_PORT),
                "--host",
                "0.0.0.0",  # noqa: S104 - inside the container's own namespace
            ],
            name=spec.instance_id,
            labels=spec.labels(self.node),
            detach=True,
            user=RUNTIME_USER,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            pids_limit=PIDS_LIMIT,
            read_only=True,
            tmpfs=TMPFS,
            nano_cpus=int(spec.cpu_millicores) * 1_000_000,
            mem_limit=f"{int(spec.memory_mib)}m",
            memswap_limit=f"{int(spec.memory_mib)}m",
            volumes={model: {"bind": MODEL_MOUNT, "mode": "ro"}},
            ports={f"{CONTAINER_PORT}/tcp": (self.publish_host, None)},
            network=network,
            environment={"EMS_INSTANCE": spec.instance_id},
        )
        if spec.gpus:
            kwargs["device_requests"] = [
                DeviceRequest(count=int(spec.gpus), capabilities=[["gpu"]])
            ]
        try:
            container = self.client.containers.create(**kwargs)
        except ImageNotFound as exc:
            raise BackendError(
                f"image {spec.image} is not on node {self.node}; build it with "
                f"`runtimes/build-images {spec.runtime}`"
            ) from exc
        except APIError as exc:
            raise BackendError(
                f"cannot create container: {exc}", transient=_transient(exc)
            ) from exc
        faults.point("after_container_create")
        try:
            container.start()
        except APIError as exc:
            container.remove(force=True)
            raise BackendError(f"cannot start container: {exc}", transient=_transient(exc)) from exc
        container.reload()
        return self._status(container)

    @engine_errors
    def stop(self, instance_id: str, *, grace: float = 10.0) -> InstanceStatus | None:
        container = self._get(instance_id)
        if container is None:
            return None
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=max(0, round(grace)))  # SIGTERM, then SIGKILL
            container.reload()
            status = self._status(container)
            container.remove(force=True)
        except NotFound:
            return None
        except APIError as exc:
            raise BackendError(f"cannot stop {instance_id}: {exc}", transient=True) from exc
        return status

    @engine_errors
    def inspect(self, instance_id: str) -> InstanceStatus:
        container = self._get(instance_id)
        if container is None:
            return InstanceStatus(instance_id, "", "", "", MISSING)
        return self._status(container)

    @engine_errors
    def list(self, labels: dict[str, str] | None = None) -> list[InstanceStatus]:
        wanted = {LABEL_NODE: self.node, **(labels or {})}
        filters = {"label": [f"{key}={value}" for key, value in wanted.items()]}
        try:
            containers = self.client.containers.list(all=True, filters=filters)
        except APIError as exc:
            raise BackendError(f"cannot list containers: {exc}", transient=True) from exc
        return [self._status(container) for container in containers]

    @engine_errors
    def stats(self, instance_id: str) -> InstanceStats:
        container = self._get(instance_id)
        if container is None:
            raise BackendError(f"{instance_id} does not exist")
        raw = container.stats(stream=False)
        cpu = raw.get("cpu_stats", {})
        pre = raw.get("precpu_stats", {})
        cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get(
            "total_usage", 0
        )
        system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or [1])
        nano = container.attrs.get("HostConfig", {}).get("NanoCpus") or 0
        limit_cores = nano / 1e9 if nano else online
        cpu_percent = None
        if system_delta > 0 and cpu_delta >= 0:
            cpu_percent = 100.0 * (cpu_delta / system_delta) * online / limit_cores
        memory = raw.get("memory_stats", {})
        inner = memory.get("stats", {})
        cache = inner.get("total_inactive_file", inner.get("inactive_file", inner.get("cache", 0)))
        usage = memory.get("usage")
        return InstanceStats(
            cpu_percent=cpu_percent,
            memory_bytes=max(0, usage - cache) if usage is not None else None,
            memory_limit_bytes=memory.get("limit"),
            gpu_percent=None,  # the engine does not report GPU use; the metrics poller asks DCGM
        )

    @engine_errors
    def gpu_devices(self, instance_id: str) -> list[str]:
        """The device ids of the container's GPU request. A request by count gets devices
        ``0 … count-1`` from Docker's NVIDIA driver (it sets NVIDIA_VISIBLE_DEVICES so), which
        is what is recorded then."""
        container = self._get(instance_id)
        if container is None:
            return []
        ids: list[str] = []
        for request in container.attrs.get("HostConfig", {}).get("DeviceRequests") or []:
            if request.get("DeviceIDs"):
                ids += [str(d) for d in request["DeviceIDs"]]
            elif (request.get("Count") or 0) > 0:
                ids += [str(i) for i in range(int(request["Count"]))]
        return ids

    @engine_errors
    def logs(self, instance_id: str, *, tail: int = 100) -> str:
        container = self._get(instance_id)
        if container is None:
            return ""
        return container.logs(tail=tail, stdout=True, stderr=True).decode("utf-8", "replace")

    @engine_errors
    def gc_models(self, in_use, *, min_age: float = 600.0) -> list[str]:
        """Remove the node's model volumes no live instance uses (volume nodes only)."""
        if not self.model_volumes:
            return []
        try:
            return volumes.gc(self.client, node=self.node, in_use=in_use, min_age=min_age)
        except APIError as exc:
            raise BackendError(f"cannot collect model volumes: {exc}", transient=True) from exc

    def close(self) -> None:
        self.client.close()
        self._remove_tls()

    def _remove_tls(self) -> None:
        if self._tls_dir:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    # --- helpers ------------------------------------------------------------------------------
    def _get(self, instance_id: str):
        try:
            container = self.client.containers.get(instance_id)
        except NotFound:
            # not named after its instance (started by hand or by another tool): find the label
            found = self.client.containers.list(
                all=True,
                filters={"label": [f"{LABEL_INSTANCE}={instance_id}", f"{LABEL_NODE}={self.node}"]},
            )
            if not found:
                return None
            container = found[0]
        except APIError as exc:
            raise BackendError(f"cannot inspect {instance_id}: {exc}", transient=True) from exc
        if container.labels.get(LABEL_NODE) != self.node:
            return None  # not ours: never touch containers another node or tool started
        return container

    def _status(self, container) -> InstanceStatus:
        attrs = container.attrs
        state = attrs.get("State", {})
        labels = container.labels or {}
        docker_state = state.get("Status", "")
        if docker_state in ("running", "restarting"):
            ours = RUNNING
        elif docker_state == "paused":
            ours = PAUSED  # frozen: holds its port, answers nothing
        elif docker_state == "created":
            ours = CREATED
        else:
            ours = EXITED
        address = ""
        bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(
            f"{CONTAINER_PORT}/tcp"
        )
        if bindings:
            address = f"http://{self.advertise_host}:{bindings[0]['HostPort']}"
        message = state.get("Error", "")
        if state.get("OOMKilled"):
            message = "killed: out of memory (raise the instance's memory)"
        elif ours == EXITED and not message:
            message = f"exited with code {state.get('ExitCode')}"
        elif ours == PAUSED:
            message = "is paused (frozen by the engine)"
        return InstanceStatus(
            instance_id=labels.get(LABEL_INSTANCE, container.name),
            service_id=labels.get(LABEL_SERVICE, ""),
            tenant_id=labels.get(LABEL_TENANT, ""),
            backend_id=container.id,
            state=ours,
            address=address,
            started_at=parse_time(state.get("StartedAt")),
            finished_at=parse_time(state.get("FinishedAt")) if ours == EXITED else None,
            exit_code=state.get("ExitCode") if ours == EXITED else None,
            restarts=int(attrs.get("RestartCount") or 0),
            message=message,
            labels=dict(labels),
        )
