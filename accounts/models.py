"""Tenants, memberships, policies, the service-role authorization, API keys and the audit log."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import authz
from accounts.scoping import TenantOwnedModel, TenantOwnedQuerySet

SERVICE_ROLE_NAME = "EMS_ServiceRole"


def new_app_id() -> str:
    """A random 10-digit numeric app id (no leading zero); uniqueness is the caller's loop."""
    return str(secrets.randbelow(9 * 10**9) + 10**9)


class Tenant(models.Model):
    """An account: what a main account signs up for. Its ``app_id`` suffixes its buckets.

    An operator may suspend it (``accounts.services.tenant_suspend``): its services stop, its
    endpoints answer 403 with ``suspension_reason``, its logins and API keys are refused."""

    app_id = models.CharField(max_length=10, unique=True, editable=False)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)
    suspension_reason = models.CharField(max_length=300, blank=True, default="", editable=False)

    class Meta:
        ordering = ["app_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.app_id})"

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def suspension_message(self) -> str:
        """What a caller of a suspended tenant is told."""
        reason = f": {self.suspension_reason}" if self.suspension_reason else ""
        return (
            f"The account {self.app_id} is suspended{reason}. "
            "Contact the platform operator to have it reinstated."
        )


class Membership(TenantOwnedModel):
    """A user inside a tenant: the **actor** of every operation.

    ``main`` is the owner (one per tenant); ``sub`` accounts are users the main account made,
    named uniquely in the tenant and logging in with app id + name; ``collaborator`` is an
    existing user of another tenant, ``pending`` until they accept the invitation.
    """

    MAIN, SUB, COLLABORATOR = "main", "sub", "collaborator"
    KINDS = [(MAIN, "main account"), (SUB, "sub-account"), (COLLABORATOR, "collaborator")]
    ACCEPTED, PENDING = "accepted", "pending"
    STATUSES = [(ACCEPTED, "accepted"), (PENDING, "pending")]

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    kind = models.CharField(max_length=12, choices=KINDS)
    name = models.CharField(max_length=64, help_text="Sub-account name; the username otherwise.")
    status = models.CharField(max_length=8, choices=STATUSES, default=ACCEPTED)
    invite_token_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    resource_kind = "member"

    class Meta:
        ordering = ["tenant_id", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_once_per_tenant"),
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(kind="main"), name="membership_one_main"
            ),
            models.UniqueConstraint(
                fields=["tenant", "name"], condition=Q(kind="sub"), name="membership_sub_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()} of {self.tenant.app_id})"

    @property
    def resource_ident(self) -> str:
        return self.name

    @property
    def is_main(self) -> bool:
        return self.kind == self.MAIN

    @property
    def is_active(self) -> bool:
        return self.status == self.ACCEPTED and self.user.is_active


class PolicyQuerySet(TenantOwnedQuerySet):
    pass


class Policy(TenantOwnedModel):
    """A JSON policy document: a tenant's custom policy, or a platform preset (no tenant)."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="policies"
    )
    name = models.CharField(max_length=128)
    description = models.CharField(max_length=300, blank=True, default="")
    document = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PolicyQuerySet.as_manager()
    resource_kind = "policy"

    class Meta:
        ordering = ["tenant_id", "name"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="policy_name_per_tenant"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(tenant__isnull=True), name="preset_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def scope_q(cls, actor, queryset):
        return queryset.filter(Q(tenant_id=actor.tenant_id) | Q(tenant__isnull=True))

    @property
    def is_preset(self) -> bool:
        return self.tenant_id is None

    @property
    def resource_ident(self) -> str:
        return self.name

    @property
    def resource_name(self) -> str:
        return authz.resource_name(self.tenant, "policy", self.name)


class PolicyAttachment(TenantOwnedModel):
    """A policy attached to a member (sub-account or collaborator) of the same tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="attachments")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="attachments")
    attached_by = models.ForeignKey(
        Membership, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    resource_kind = "member"

    class Meta:
        ordering = ["membership_id", "policy__name"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "membership"], name="attachment_once"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} -> {self.membership.name}"

    @property
    def resource_ident(self) -> str:
        return self.membership.name


class ServiceRoleAuthorization(TenantOwnedModel):
    """A tenant's consent that the platform may use its object storage (``EMS_ServiceRole``).

    One row per grant; the grant in force is the latest with no ``revoked_at``.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="service_roles")
    role_name = models.CharField(max_length=64, default=SERVICE_ROLE_NAME)
    authorized_by = models.ForeignKey(
        Membership, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    authorized_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        Membership, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    resource_kind = "role"

    class Meta:
        ordering = ["-authorized_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "role_name"],
                condition=Q(revoked_at__isnull=True),
                name="one_live_service_role",
            ),
        ]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "authorized"
        return f"{self.role_name} {state} for {self.tenant.app_id}"

    @property
    def resource_ident(self) -> str:
        return self.role_name


class TenantStorageCredential(TenantOwnedModel):
    """The tenant's own object-storage credentials, Fernet-encrypted; never shown back."""

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="storage_credential"
    )
    access_key_id = models.CharField(max_length=128)
    secret_encrypted = models.BinaryField(editable=False)
    endpoint_url = models.URLField(blank=True, default="")
    updated_by = models.ForeignKey(
        Membership, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    resource_kind = "storage-credential"

    def __str__(self) -> str:
        return f"storage credentials of {self.tenant.app_id}"

    @property
    def masked_key_id(self) -> str:
        return self.access_key_id[:4] + "…" if self.access_key_id else ""


class ApiKey(TenantOwnedModel):
    """A named API key of one membership. Only a SHA-256 hash is kept; the key is shown once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    resource_kind = "api-key"

    class Meta:
        ordering = ["membership_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["membership", "name"],
                condition=Q(revoked_at__isnull=True),
                name="api_key_name_per_member",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def resource_ident(self) -> str:
        return f"{self.membership.name}/{self.name}"


class AuditEvent(TenantOwnedModel):
    """One state-changing operation: who (actor), what (action, resource), outcome, when."""

    SUCCESS, DENIED, FAILED = "success", "denied", "failed"
    OUTCOMES = [(SUCCESS, "success"), (DENIED, "denied"), (FAILED, "failed")]

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(Membership, on_delete=models.SET_NULL, null=True, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True, default="")
    action = models.CharField(max_length=128, db_index=True)
    resource = models.CharField(max_length=300, blank=True, default="")
    outcome = models.CharField(max_length=8, choices=OUTCOMES, default=SUCCESS)
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    detail = models.JSONField(default=dict, blank=True)

    resource_kind = "audit"

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.outcome}"
        )
