"""The operator admin: resource groups and their nodes (operators create dedicated groups
after a purchase), services with their instances and events (read-only; operators reconcile)."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts.actor import PlatformActor
from accounts.admin_base import DeleteThroughServices
from serving import services
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
    ]
    readonly_fields = ["claimed_cpu_millicores", "claimed_memory_mib", "claimed_gpus"]


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
