"""Data of the serving app: resource groups and nodes, services, revisions, instances, events.

Capacity is counted in millicores (1/1000 core), MiB and GPUs. A node's ``claimed_*`` columns
only move through conditional UPDATEs (``serving.scheduling``), and check constraints make an
overcommitted node impossible even if a bug tried.
"""

from __future__ import annotations

import secrets
import string

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.scoping import TenantOwnedModel, TenantOwnedQuerySet

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_service_id() -> str:
    """A platform-unique service id such as ``ems-7f3k2p9q`` (used in URLs and host names)."""
    return "ems-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def new_instance_id(service_id: str) -> str:
    return f"{service_id}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))


class ResourceGroupQuerySet(TenantOwnedQuerySet):
    pass


class ResourceGroup(TenantOwnedModel):
    """Where services run. **Public** groups are the platform's (no tenant, one or more per
    region, made by the bootstrap step); tenants draw CPU or GPU *quota* from them and pay per
    quota unit. **Dedicated** groups belong to one tenant (operators create them after a
    purchase); instances there have custom sizes and cost nothing extra. A group's capacity is
    the sum of its active nodes' capacity."""

    PUBLIC, DEDICATED = "public", "dedicated"
    KINDS = [(PUBLIC, "public"), (DEDICATED, "dedicated")]

    tenant = models.ForeignKey(
        "accounts.Tenant",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for a public group.",
    )
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=KINDS)
    region = models.ForeignKey("models_repo.Region", on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=300, blank=True, default="")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = ResourceGroupQuerySet.as_manager()
    resource_kind = "resource-group"

    class Meta:
        ordering = ["region_id", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["region", "name"], name="resource_group_name"),
            models.CheckConstraint(
                condition=Q(kind="public", tenant__isnull=True)
                | Q(kind="dedicated", tenant__isnull=False),
                name="resource_group_public_has_no_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.region_id and self.region.name})"

    @classmethod
    def scope_q(cls, actor, queryset):
        return queryset.filter(Q(tenant_id=actor.tenant_id) | Q(tenant__isnull=True))

    @property
    def resource_ident(self) -> str:
        return str(self.pk)

    @property
    def is_public(self) -> bool:
        return self.kind == self.PUBLIC

    def capacity(self) -> dict:
        """Total and free capacity over the group's active nodes."""
        sums = self.nodes.filter(is_active=True).aggregate(
            cpu=models.Sum("capacity_cpu_millicores"),
            memory=models.Sum("capacity_memory_mib"),
            gpus=models.Sum("capacity_gpus"),
            cpu_used=models.Sum("claimed_cpu_millicores"),
            memory_used=models.Sum("claimed_memory_mib"),
            gpus_used=models.Sum("claimed_gpus"),
        )
        total = {key: sums[key] or 0 for key in ("cpu", "memory", "gpus")}
        return {
            **total,
            "cpu_free": total["cpu"] - (sums["cpu_used"] or 0),
            "memory_free": total["memory"] - (sums["memory_used"] or 0),
            "gpus_free": total["gpus"] - (sums["gpus_used"] or 0),
        }


class Node(models.Model):
    """A machine of a resource group: a Docker engine (local, or on another host over TCP with
    TLS), or for the embedded default this host's processes; its capacity, and what instances
    have claimed of it. ``state``: ``up`` takes new instances; ``draining`` takes none and its
    instances are moved (``serving.nodes``); ``down``: its engine stopped answering for longer
    than ``EMS_NODE_DOWN_GRACE_SECONDS``, its instances are out of the routes and replaced."""

    DOCKER, PROCESS = "docker", "process"
    BACKENDS = [(DOCKER, "Docker engine"), (PROCESS, "local processes (no limits)")]
    UP, DRAINING, DOWN = "up", "draining", "down"
    STATES = [(UP, "up"), (DRAINING, "draining"), (DOWN, "down")]

    group = models.ForeignKey(ResourceGroup, on_delete=models.PROTECT, related_name="nodes")
    name = models.SlugField(max_length=40, unique=True)
    backend = models.CharField(max_length=10, choices=BACKENDS, default=DOCKER)
    engine_url = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Docker engine address (unix:///var/run/docker.sock, tcp://host:2376); "
        "empty: the local engine from DOCKER_HOST.",
    )
    publish_host = models.CharField(
        max_length=64,
        default="127.0.0.1",
        help_text="Host address instance ports are published on.",
    )
    advertise_host = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="Host name the gateway uses to reach instances (default: publish host).",
    )
    capacity_cpu_millicores = models.PositiveIntegerField()
    capacity_memory_mib = models.PositiveIntegerField()
    capacity_gpus = models.PositiveSmallIntegerField(default=0)
    claimed_cpu_millicores = models.PositiveIntegerField(default=0, editable=False)
    claimed_memory_mib = models.PositiveIntegerField(default=0, editable=False)
    claimed_gpus = models.PositiveSmallIntegerField(default=0, editable=False)
    tls_encrypted = models.TextField(
        blank=True,
        default="",
        editable=False,
        help_text="CA, client certificate and key (PEM, JSON) encrypted with EMS_SECRETS_KEY.",
    )
    is_active = models.BooleanField(default=True)
    state = models.CharField(max_length=10, choices=STATES, default=UP)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    unreachable_since = models.DateTimeField(null=True, blank=True, editable=False)
    message = models.CharField(max_length=2000, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["group_id", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(claimed_cpu_millicores__lte=F("capacity_cpu_millicores"))
                & Q(claimed_memory_mib__lte=F("capacity_memory_mib"))
                & Q(claimed_gpus__lte=F("capacity_gpus")),
                name="node_never_overcommitted",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def state_dir(self):
        return settings.DATA_DIR / "serving" / "process"

    def cache_root(self):
        return settings.EMS_MODEL_CACHE_DIR / self.name

    @property
    def is_remote(self) -> bool:
        """An engine on another host: models reach it in volumes, not bind mounts."""
        return self.backend == self.DOCKER and self.engine_url.startswith(("tcp://", "ssh://"))

    @property
    def schedulable(self) -> bool:
        return self.is_active and self.state == self.UP

    @property
    def free(self) -> tuple[int, int, int]:
        return (
            self.capacity_cpu_millicores - self.claimed_cpu_millicores,
            self.capacity_memory_mib - self.claimed_memory_mib,
            self.capacity_gpus - self.claimed_gpus,
        )


class ServiceQuerySet(TenantOwnedQuerySet):
    def live(self):
        return self.filter(deleted_at__isnull=True)

    def online(self):
        """Online services only (not the backing services of batch jobs)."""
        return self.filter(kind=Service.ONLINE)


class Service(TenantOwnedModel):
    """An online inference service: a config version running on a resource group. A row of
    kind ``batch`` backs a batch job (``serving.jobs``): the same reconciler, backends, health
    checks and meter run its instances, but it is not published to the gateway and no service
    list, page, API or autoscaler shows it (``scope_q`` and the selectors keep to ``online``)."""

    ONLINE, BATCH = "online", "batch"
    KINDS = [(ONLINE, "online service"), (BATCH, "batch job")]

    WAITING, DEPLOYING, NORMAL, ABNORMAL = "Waiting", "Deploying", "Normal", "Abnormal"
    UPDATING, STOPPING, STOPPED, RESUMING, FAILED = (
        "Updating",
        "Stopping",
        "Stopped",
        "Resuming",
        "Failed",
    )
    STATUSES = [
        (s, s)
        for s in (
            WAITING,
            DEPLOYING,
            NORMAL,
            ABNORMAL,
            UPDATING,
            STOPPING,
            STOPPED,
            RESUMING,
            FAILED,
        )
    ]
    RUN, STOP, DELETE = "run", "stop", "delete"
    DESIRED = [(RUN, "running"), (STOP, "stopped"), (DELETE, "deleted")]
    MANUAL, AUTO = "manual", "auto"
    SCALING = [(MANUAL, "manual"), (AUTO, "automatic")]

    service_id = models.CharField(
        max_length=16, unique=True, default=new_service_id, editable=False
    )
    name = models.CharField(max_length=40)
    kind = models.CharField(max_length=6, choices=KINDS, default=ONLINE)
    region = models.ForeignKey("models_repo.Region", on_delete=models.PROTECT, related_name="+")
    group = models.ForeignKey(ResourceGroup, on_delete=models.PROTECT, related_name="services")
    config = models.ForeignKey(
        "models_repo.ModelConfig", on_delete=models.PROTECT, related_name="services"
    )
    revision = models.ForeignKey(
        "serving.Revision", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    scaling_mode = models.CharField(max_length=6, choices=SCALING, default=MANUAL)
    replicas = models.PositiveIntegerField(default=1, help_text="Desired instances now.")
    saved_replicas = models.PositiveIntegerField(default=0, help_text="Replicas at the last stop.")
    autoscale = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"min": 1, "max": 4, "start": 1, "triggers": [{"metric": "cpu", "target": 60}]}'
        " (stored now; acted on by the autoscaler later).",
    )
    auth_enabled = models.BooleanField(default=False)
    desired = models.CharField(max_length=6, choices=DESIRED, default=RUN)
    status = models.CharField(max_length=10, choices=STATUSES, default=WAITING)
    message = models.CharField(max_length=4000, blank=True, default="")
    failures = models.PositiveIntegerField(default=0, help_text="Crashes since last healthy.")
    # reconcile lease: claimed with a conditional UPDATE so concurrent passes never overlap
    lease_owner = models.CharField(max_length=40, blank=True, default="", editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        "accounts.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = ServiceQuerySet.as_manager()
    resource_kind = "service"

    class Meta:
        ordering = ["tenant_id", "-created_at"]
        indexes = [
            # the service list (page and API): a tenant's live services, newest first
            models.Index(
                fields=["tenant", "-created_at"],
                condition=Q(deleted_at__isnull=True),
                name="service_list",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=Q(deleted_at__isnull=True, kind="online"),
                name="service_name_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.service_id})"

    @classmethod
    def scope_q(cls, actor, queryset):
        return queryset.filter(tenant_id=actor.tenant_id, deleted_at__isnull=True, kind=cls.ONLINE)

    @property
    def resource_ident(self) -> str:
        return self.service_id

    @property
    def is_batch(self) -> bool:
        return self.kind == self.BATCH

    @property
    def resource_region(self) -> str:
        return self.region.name


class Revision(models.Model):
    """What one deploy, update or rollback asked for: the version and the instance spec."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    version = models.ForeignKey(
        "models_repo.ModelConfigVersion", on_delete=models.PROTECT, related_name="+"
    )
    cpu_millicores = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    gpus = models.PositiveSmallIntegerField(default=0)
    quota_type = models.CharField(max_length=8, blank=True, default="", help_text="Public groups.")
    quota_count = models.PositiveSmallIntegerField(default=0)
    reason = models.CharField(max_length=20, default="deploy")  # deploy, update, rollback
    created_by = models.ForeignKey(
        "accounts.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["service_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["service", "number"], name="revision_number"),
        ]

    def __str__(self) -> str:
        return f"{self.service.service_id} r{self.number} ({self.version})"

    @property
    def size(self) -> tuple[int, int, int]:
        return (self.cpu_millicores, self.memory_mib, self.gpus)


class Instance(TenantOwnedModel):
    """One running copy of a service on a node. ``started_at`` / ``stopped_at`` are the
    backend's own times (the container's State), which billing charges from."""

    PENDING, STARTING, RUNNING = "pending", "starting", "running"
    STOPPING, STOPPED, FAILED = "stopping", "stopped", "failed"
    STATES = [(s, s) for s in (PENDING, STARTING, RUNNING, STOPPING, STOPPED, FAILED)]
    ACTIVE = (PENDING, STARTING, RUNNING)
    LIVE = (PENDING, STARTING, RUNNING, STOPPING)

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="instances")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="instances")
    instance_id = models.CharField(max_length=40, unique=True, editable=False)
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="instances")
    backend_id = models.CharField(max_length=80, blank=True, default="")
    address = models.CharField(max_length=255, blank=True, default="")
    state = models.CharField(max_length=10, choices=STATES, default=PENDING)
    restarts = models.PositiveIntegerField(default=0)
    last_message = models.TextField(blank=True, default="")
    cpu_millicores = models.PositiveIntegerField()
    memory_mib = models.PositiveIntegerField()
    gpus = models.PositiveSmallIntegerField(default=0)
    holds_claim = models.BooleanField(default=True, editable=False)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Restart backoff.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # health of a running instance (serving.health): failed probes in a row since when, and why
    # it was taken out of the routes (set once; the reconciler then replaces it)
    probe_failures = models.PositiveIntegerField(default=0, editable=False)
    probe_failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    unhealthy_reason = models.TextField(blank=True, default="", editable=False)

    resource_kind = "service"

    class Meta:
        ordering = ["service_id", "created_at"]
        indexes = [models.Index(fields=["service", "state"])]

    def __str__(self) -> str:
        return self.instance_id

    @property
    def resource_ident(self) -> str:
        return self.service.service_id


class ServiceEvent(models.Model):
    """The timeline of a service: scheduled, model fetched, started, healthy, replaced, ..."""

    INFO, WARNING, ERROR = "info", "warning", "error"
    LEVELS = [(INFO, "info"), (WARNING, "warning"), (ERROR, "error")]

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="events")
    instance_id = models.CharField(max_length=40, blank=True, default="")
    kind = models.CharField(max_length=20)
    level = models.CharField(max_length=8, choices=LEVELS, default=INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["service_id", "-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.kind}: {self.message[:60]}"


class ServiceToken(TenantOwnedModel):
    """A secret a caller sends as ``x-Auth-Token``. Only its SHA-256 travels to routes and the
    gateway; ``secret`` is the token encrypted with ``EMS_SECRETS_KEY`` so holders of
    ``ems:DescribeServiceToken`` can see it again. A rotated-out token stays valid until
    ``not_after`` (the grace period); a revoked one (``revoked_at``) is dropped from the route."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="tokens")
    sha256 = models.CharField(max_length=64, unique=True, editable=False)
    secret = models.TextField(editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    not_after = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        "accounts.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    resource_kind = "service"

    class Meta:
        ordering = ["service_id", "-created_at", "-pk"]
        indexes = [models.Index(fields=["service", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.service.service_id} token {self.sha256[:8]}"

    @property
    def resource_ident(self) -> str:
        return self.service.service_id

    def is_live(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.not_after is None or self.not_after > now)


# The metrics poller's time series and the autoscaler's memory live in their own module, the
# batch jobs in theirs (their backing services are rows of kind "batch" above).
from serving.jobs.models import Job, JobEvent, JobFile, JobPart  # noqa: E402, F401
from serving.metrics.models import AutoscalerState, MetricPoint  # noqa: E402, F401
