"""The operator admin: resource groups and their nodes (operators create dedicated groups
after a purchase), services with their instances and events (read-only; operators reconcile)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from accounts.actor import PlatformActor
from accounts.admin_base import (
    DeleteThroughServices,
    ServiceForm,
    ThroughServicesAdmin,
    log_operator,
)
from serving import nodes, services
from serving.models import Instance, Node, ResourceGroup, Revision, Service, ServiceEvent
from serving.tasks import reconcile_service


class NodeInline(admin.TabularInline):
    model = Node
    extra = 0
    fields = [
        "name",
        "backend",
        "engine_url",
        "publish_host",
        "advertise_host",
        "capacity_cpu_millicores",
        "capacity_memory_mib",
        "capacity_gpus",
        "claimed_cpu_millicores",
        "claimed_memory_mib",
        "claimed_gpus",
        "is_active",
        "state",
    ]
    readonly_fields = ["claimed_cpu_millicores", "claimed_memory_mib", "claimed_gpus", "state"]


class NodeForm(ServiceForm):
    """Adds a Docker node through ``serving.nodes.node_add``: the engine is asked for its
    capacity, so an unreachable engine or bad certificates are form errors, not a saved row."""

    tls_ca = forms.CharField(
        label="CA certificate (PEM)", required=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    tls_cert = forms.CharField(
        label="Client certificate (PEM)", required=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    tls_key = forms.CharField(
        label="Client key (PEM; stored encrypted, never shown again)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    class Meta:
        model = Node
        fields = ["group", "name", "engine_url", "publish_host", "advertise_host", "capacity_gpus"]

    def call_service(self, data):
        try:
            return nodes.node_add(
                group=data["group"],
                name=data["name"],
                engine_url=data.get("engine_url", "").strip(),
                publish_host=data.get("publish_host", "").strip(),
                advertise_host=data.get("advertise_host", "").strip(),
                tls_ca=data.get("tls_ca", "").strip(),
                tls_cert=data.get("tls_cert", "").strip(),
                tls_key=data.get("tls_key", "").strip(),
                capacity_gpus=data.get("capacity_gpus") or 0,
            )
        except nodes.NodeError as exc:
            raise ValidationError({exc.field or "__all__": exc.message}) from None


@admin.register(Node)
class NodeAdmin(ThroughServicesAdmin):
    """Docker nodes: add (capacity read from the engine), refresh, drain, undrain, remove."""

    form = NodeForm
    list_display = [
        "name",
        "group",
        "engine_url",
        "state",
        "capacity_summary",
        "live_instances",
        "last_seen_at",
        "message",
    ]
    list_filter = ["state", "group", "is_active"]
    search_fields = ["name", "engine_url"]
    actions = ["refresh_capacity", "drain", "undrain", "remove"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [f.name for f in Node._meta.fields]

    def get_fields(self, request, obj=None):
        if obj is None:
            return [*NodeForm.Meta.fields, "tls_ca", "tls_cert", "tls_key"]
        return [f.name for f in Node._meta.fields if f.name != "tls_encrypted"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, change=change, **kwargs)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def delete_through(self, request, obj):
        try:
            nodes.node_remove(obj)
        except nodes.NodeError as exc:
            raise ValidationError(exc.message) from None

    @admin.display(description="capacity (claimed / total)")
    def capacity_summary(self, node) -> str:
        return (
            f"{node.claimed_cpu_millicores}/{node.capacity_cpu_millicores}m CPU, "
            f"{node.claimed_memory_mib}/{node.capacity_memory_mib} MiB, "
            f"{node.claimed_gpus}/{node.capacity_gpus} GPU"
        )

    @admin.display(description="instances")
    def live_instances(self, node) -> int:
        return node.instances.filter(state__in=Instance.LIVE).count()

    def _each(self, request, queryset, verb, call):
        """Each node's own service call; what succeeded goes in the admin's history (who,
        when, what: the operator audit trail, beside the add that the change form logs)."""
        for node in queryset:
            pk, label = node.pk, str(node)  # a removed node's pk is None after the call
            try:
                call(node)
            except nodes.NodeError as exc:
                self.message_user(request, f"{node.name}: {exc.message}", messages.ERROR)
            else:
                log_operator(request, node, verb, pk=pk, label=label)
                self.message_user(request, f"{node.name}: {verb}.", messages.SUCCESS)

    @admin.action(description="Read the capacity from the engine again")
    def refresh_capacity(self, request, queryset):
        self._each(request, queryset, "capacity read from the engine", nodes.node_refresh)

    @admin.action(description="Drain (no new instances; move the existing ones)")
    def drain(self, request, queryset):
        self._each(request, queryset, "draining; its instances are being moved", nodes.node_drain)

    @admin.action(description="Undrain (take new instances again)")
    def undrain(self, request, queryset):
        self._each(request, queryset, "takes new instances again", nodes.node_undrain)

    @admin.action(description="Remove (refused while it holds instances)")
    def remove(self, request, queryset):
        self._each(request, queryset, "removed", nodes.node_remove)


@admin.register(ResourceGroup)
class ResourceGroupAdmin(DeleteThroughServices):
    list_display = ["name", "kind", "region", "tenant", "is_active", "capacity_summary"]
    list_filter = ["kind", "region", "is_active"]
    search_fields = ["name", "tenant__name", "tenant__app_id"]
    inlines = [NodeInline]

    def delete_through(self, request, obj):
        actor = PlatformActor(obj.tenant, operator=request.user) if obj.tenant_id else None
        services.resource_group_delete(actor=actor, group=obj)

    @admin.display(description="capacity (free / total)")
    def capacity_summary(self, group) -> str:
        c = group.capacity()
        return (
            f"{c['cpu_free']}/{c['cpu']}m CPU, {c['memory_free']}/{c['memory']} MiB, "
            f"{c['gpus_free']}/{c['gpus']} GPU"
        )


class RevisionInline(admin.TabularInline):
    model = Revision
    extra = 0
    can_delete = False
    fields = [
        "number",
        "version",
        "cpu_millicores",
        "memory_mib",
        "gpus",
        "quota_type",
        "quota_count",
        "reason",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class InstanceInline(admin.TabularInline):
    model = Instance
    extra = 0
    can_delete = False
    fields = [
        "instance_id",
        "state",
        "node",
        "address",
        "restarts",
        "started_at",
        "stopped_at",
        "last_message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = [
        "service_id",
        "name",
        "kind",
        "tenant",
        "status",
        "replicas",
        "group",
        "created_at",
    ]
    list_filter = ["kind", "status", "group__region"]
    search_fields = ["service_id", "name", "tenant__app_id"]
    readonly_fields = [f.name for f in Service._meta.fields]
    inlines = [RevisionInline, InstanceInline]
    actions = ["reconcile_now"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # tenants delete through the service layer (it stops the instances)

    @admin.action(description="Reconcile now")
    def reconcile_now(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            reconcile_service.delay(pk)
        messages.info(request, f"Queued {queryset.count()} reconcile pass(es).")


@admin.register(ServiceEvent)
class ServiceEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "service", "kind", "level", "instance_id", "message"]
    list_filter = ["kind", "level"]
    search_fields = ["service__service_id", "instance_id", "message"]
    readonly_fields = [f.name for f in ServiceEvent._meta.fields]

    def has_add_permission(self, request):
        return False


# batch jobs (their backing services are the rows of kind "batch" above)
from serving.jobs import admin as _jobs_admin  # noqa: E402, F401
