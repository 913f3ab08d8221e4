"""The one interface every runtime backend implements (docker, process; kubernetes later).

It speaks in **instances and labels**: the reconciler hands a :class:`InstanceSpec` (ids, image,
runtime, limits, the model's cache digest) to :meth:`Backend.start` and gets back an
:class:`InstanceStatus` (the backend's own id, the address callers use, exact start/finish times
from the backend's own events). Nothing here exposes a local PID or a local path: a Kubernetes
backend fits behind the same methods. Django-free, so the gateway and benchmarks can import it.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

# Labels every instance carries (containers' labels; the process backend's state files).
LABEL_SERVICE = "ems.service"
LABEL_INSTANCE = "ems.instance"
LABEL_TENANT = "ems.tenant"
LABEL_NODE = "ems.node"
LABEL_MODEL = "ems.model"  # the model-cache digest the instance mounts (for cache GC)

MODEL_NAME = "m"  # the platform always serves the model as "m"
CONTAINER_PORT = 8501
MODEL_MOUNT = f"/models/{MODEL_NAME}"

# Instance states as a backend reports them. PAUSED: the engine froze it (``docker pause``);
# it holds its port but cannot answer, so it is not running for the reconciler nor the routes.
CREATED, RUNNING, EXITED, MISSING = "created", "running", "exited", "missing"
PAUSED = "paused"


class BackendError(Exception):
    """An error from the engine. ``transient`` ones are retried with backoff by the reconciler;
    permanent ones (bad image, impossible limits) end in a clear status for the user."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class InstanceSpec:
    """What to run for one instance of a service."""

    service_id: str  # platform-unique service id, e.g. "ems-7f3k2p9q"
    instance_id: str  # platform-unique instance id, e.g. "ems-7f3k2p9q-4xk2m1"
    tenant_id: str  # the tenant's app id
    runtime: str  # tfserving, pmml, openvino, tensorrt, angel
    model_digest: str  # the node's model-cache key (the version's manifest digest)
    image: str = ""  # ems-runtime-<runtime>:<tag> (docker, kubernetes)
    cpu_millicores: int = 1000
    memory_mib: int = 2048
    gpus: int = 0
    extra_labels: dict[str, str] = field(default_factory=dict)

    def labels(self, node: str) -> dict[str, str]:
        return {
            **self.extra_labels,
            LABEL_SERVICE: self.service_id,
            LABEL_INSTANCE: self.instance_id,
            LABEL_TENANT: str(self.tenant_id),
            LABEL_NODE: node,
            LABEL_MODEL: self.model_digest,
        }


@dataclass
class InstanceStatus:
    """What the backend knows about one instance right now."""

    instance_id: str
    service_id: str
    tenant_id: str
    backend_id: str  # container id, or "proc-<pid>-<create time>" for the process backend
    state: str  # CREATED, RUNNING, EXITED, MISSING
    address: str = ""  # http://host:port callers (the gateway) use
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    restarts: int = 0
    message: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == RUNNING


@dataclass(frozen=True)
class InstanceStats:
    """Utilisation of one instance; percentages are of its *limit* (what autoscaling needs)."""

    cpu_percent: float | None  # of the CPU limit (100 = the whole limit); None when unknown
    memory_bytes: int | None
    memory_limit_bytes: int | None
    gpu_percent: float | None = None  # None where the instance has no GPU

    @property
    def memory_percent(self) -> float | None:
        if not self.memory_bytes or not self.memory_limit_bytes:
            return None
        return 100.0 * self.memory_bytes / self.memory_limit_bytes


def parse_time(value: str | None) -> dt.datetime | None:
    """Docker's RFC 3339 times (nanoseconds, ``Z``); the zero time means "never"."""
    if not value or value.startswith("0001-01-01"):
        return None
    value = value.rstrip("Z")
    if "+" in value[10:]:
        value = value[: value.rindex("+")]
    head, _, frac = value.partition(".")
    frac = (frac + "000000")[:6]
    return dt.datetime.fromisoformat(f"{head}.{frac}").replace(tzinfo=dt.UTC)


class Backend(ABC):
    """One node's engine. ``node`` names the node (its ``Node.name``) in labels."""

    name = "abstract"
    enforces_limits = True  # False for the process backend: the UI says so

    def __init__(self, *, node: str):
        self.node = node

    @abstractmethod
    def start(self, spec: InstanceSpec, model_dir: str) -> InstanceStatus:
        """Create and start the instance. ``model_dir`` is the node-local cache entry returned
        by the node's model cache (opaque to callers; a remote backend resolves the digest)."""

    @abstractmethod
    def stop(self, instance_id: str, *, grace: float = 10.0) -> InstanceStatus | None:
        """SIGTERM, then kill after ``grace`` seconds; remove it. Returns its last status (with
        the exact finish time) or None when it was already gone."""

    @abstractmethod
    def inspect(self, instance_id: str) -> InstanceStatus:
        """The instance's status; state MISSING when the backend does not know it."""

    @abstractmethod
    def list(self, labels: dict[str, str] | None = None) -> list[InstanceStatus]:
        """Every instance of this node whose labels include ``labels``."""

    @abstractmethod
    def stats(self, instance_id: str) -> InstanceStats:
        """CPU % of the limit, memory bytes and limit, GPU where present."""

    def gpu_devices(self, instance_id: str) -> list[str]:
        """The GPU device ids (indexes or UUIDs) the instance was given; [] for none."""
        return []

    @abstractmethod
    def logs(self, instance_id: str, *, tail: int = 100) -> str:
        """The last ``tail`` lines of the runtime's output."""

    # --- health, the same for every backend: the runtime's own status endpoint ---------------
    def health(self, status: InstanceStatus, *, timeout: float = 2.0) -> bool:
        """True when the runtime reports the model ``AVAILABLE`` (``serving.health.probe``)."""
        if not status.running or not status.address:
            return False
        from serving.health import probe

        return probe(status.address, timeout=timeout).ok

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine connections."""
