"""Regions, runtime environments, model configs and their immutable versions."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.scoping import TenantOwnedModel, TenantOwnedQuerySet

MODEL_FORMATS = [
    ("saved_model", "TensorFlow SavedModel"),
    ("pmml", "PMML"),
    ("tensorrt", "TensorRT engine"),
    ("openvino", "OpenVINO IR (.xml + .bin)"),
    ("angel", "Angel model"),
    ("custom", "Custom (checked only for being non-empty)"),
]


class Region(models.Model):
    """A region such as ``ap-beijing``: where buckets live and services run. Operator-managed."""

    name = models.CharField(
        max_length=32,
        unique=True,
        validators=[RegexValidator(r"^[a-z]{2,}(-[a-z0-9]+)+$", "A region name like ap-beijing.")],
    )
    display_name = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RuntimeEnvironmentQuerySet(TenantOwnedQuerySet):
    pass


class RuntimeEnvironment(TenantOwnedModel):
    """A runtime a version is served with: one of the platform's five public ones (no tenant)
    or a tenant's custom runtime with its own image that follows the runtime container
    contract (``python -m runtimes.server`` semantics, port 8501, model at ``/models/m``)."""

    tenant = models.ForeignKey(
        "accounts.Tenant", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    name = models.CharField(
        max_length=40,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "Lowercase letters, digits, '-'.")],
    )
    display_name = models.CharField(max_length=64)
    runtime = models.CharField(
        max_length=20, help_text="The runtimes.server --runtime value, or 'custom'."
    )
    model_format = models.CharField(max_length=20, choices=MODEL_FORMATS)
    image = models.CharField(max_length=255, help_text="Container image (without the tag).")
    needs_gpu = models.BooleanField(default=False)
    health_check = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = RuntimeEnvironmentQuerySet.as_manager()
    resource_kind = "runtime"

    class Meta:
        ordering = ["tenant_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="runtime_name_per_tenant"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(tenant__isnull=True), name="public_runtime_name"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name

    @classmethod
    def scope_q(cls, actor, queryset):
        return queryset.filter(Q(tenant_id=actor.tenant_id) | Q(tenant__isnull=True))

    @property
    def is_public(self) -> bool:
        return self.tenant_id is None

    @property
    def resource_ident(self) -> str:
        return self.name


class ModelConfig(TenantOwnedModel):
    """A model service config: a name in the tenant, a region, and numbered versions."""

    name = models.CharField(
        max_length=20,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                "Letters, digits, '-' and '_', starting with a letter or digit.",
            )
        ],
    )
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=500, blank=True, default="")
    # The highest version number handed out; raised with a conditional UPDATE (never read,
    # add, write) so concurrent creators get distinct numbers.
    last_version = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        "accounts.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    resource_kind = "config"

    class Meta:
        ordering = ["tenant_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="model_config_name_per_tenant")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def resource_region(self) -> str:
        return self.region.name if self.region_id else "*"


class VersionQuerySet(TenantOwnedQuerySet):
    def update(self, **kwargs):
        raise ValidationError("A model config version never changes after it is created.")


class ModelConfigVersion(TenantOwnedModel):
    """One immutable version of a config: runtime, folder address, the folder's manifest taken
    at creation (and its digest, which keys the nodes' model cache), validation outcome."""

    PASSED, SKIPPED = "passed", "skipped"
    VALIDATION = [(PASSED, "format valid"), (SKIPPED, "custom format: not checked")]

    config = models.ForeignKey(ModelConfig, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    runtime = models.ForeignKey(RuntimeEnvironment, on_delete=models.PROTECT, related_name="+")
    address = models.CharField(max_length=1100)
    bucket = models.CharField(max_length=63)
    key_prefix = models.CharField(max_length=1024)
    manifest = models.JSONField(default=list)
    manifest_digest = models.CharField(max_length=64)
    total_size = models.BigIntegerField(default=0)
    validation_status = models.CharField(max_length=10, choices=VALIDATION)
    validation_messages = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        "accounts.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = VersionQuerySet.as_manager()
    resource_kind = "config"

    class Meta:
        ordering = ["config_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["config", "number"], name="version_number_per_config")
        ]

    def __str__(self) -> str:
        return f"{self.config.name} {self.label}"

    @property
    def label(self) -> str:
        return f"{self.number}.0"

    @property
    def resource_ident(self) -> str:
        return str(self.config_id)

    @property
    def resource_region(self) -> str:
        return self.config.region.name

    def save(self, *args, **kwargs):
        # The one invariant of this row: once written it never changes.
        if not self._state.adding:
            raise ValidationError("A model config version never changes after it is created.")
        super().save(*args, **kwargs)
