"""The tenant-scoping choke point every tenant-owned model in every app shares.

``Model.objects.for_actor(actor, action)`` is the only way views, viewsets, forms, admin and
selectors read tenant rows: the actor's tenant only, then what the policies (or django-guardian
per-object grants) allow for ``action``. Another tenant's rows are simply absent, so a lookup
through it is a 404, never a 403 that confirms the row exists.
"""

from __future__ import annotations

from django.db import models

from accounts import authz


class TenantOwnedQuerySet(models.QuerySet):
    def for_tenant(self, tenant):
        return self.filter(**{self.model.tenant_field: tenant})

    def for_actor(self, actor, action: str):
        if actor is None or getattr(actor, "tenant_id", None) is None:
            return self.none()
        return authz.scope_queryset(actor, action, self.model.scope_q(actor, self))


class TenantOwnedModel(models.Model):
    """Abstract base of every tenant-owned row: a ``tenant`` FK and the scoping manager.

    Subclasses set ``resource_kind`` (the ``<kind>`` of ``ems:<region>:<app_id>:<kind>/<ident>``)
    and may override ``resource_ident`` / ``resource_region``.
    """

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")

    objects = TenantOwnedQuerySet.as_manager()

    tenant_field = "tenant"
    resource_kind = "object"

    class Meta:
        abstract = True

    @classmethod
    def scope_q(cls, actor, queryset):
        """The rows an actor's tenant owns (overridden where platform rows are shared too)."""
        return queryset.filter(**{cls.tenant_field: actor.tenant_id})

    @property
    def resource_ident(self) -> str:
        return str(self.pk)

    @property
    def resource_region(self) -> str:
        return "*"

    @property
    def resource_name(self) -> str:
        return authz.resource_name(
            self.tenant, self.resource_kind, self.resource_ident, region=self.resource_region
        )
