"""The operator admin: regions and public runtimes are managed here; configs and versions are
shown read-only (a version never changes) and deleted through the services (one in use is
refused with a message; the deletion is audited in the tenant's log with the operator)."""

from django.contrib import admin

from accounts.admin_base import DeleteThroughServices, operator_actor
from models_repo import services
from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "display_name"]


@admin.register(RuntimeEnvironment)
class RuntimeEnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "tenant", "model_format", "image", "needs_gpu"]
    list_filter = ["model_format", "needs_gpu", ("tenant", admin.EmptyFieldListFilter)]
    search_fields = ["name", "image", "tenant__app_id"]


class VersionInline(admin.TabularInline):
    model = ModelConfigVersion
    fields = ["number", "runtime", "address", "manifest_digest", "validation_status"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelConfig)
class ModelConfigAdmin(DeleteThroughServices):
    list_display = ["name", "tenant", "region", "last_version", "created_at"]
    list_filter = ["region"]
    search_fields = ["name", "tenant__app_id", "tenant__name"]
    readonly_fields = ["tenant", "name", "region", "description", "created_by", "created_at"]
    inlines = [VersionInline]

    def has_add_permission(self, request):
        return False  # configs are made by tenants, with their first version

    def has_change_permission(self, request, obj=None):
        return False

    def delete_through(self, request, obj):
        services.model_config_delete(actor=operator_actor(request, obj.tenant), config=obj)


@admin.register(ModelConfigVersion)
class ModelConfigVersionAdmin(DeleteThroughServices):
    list_display = ["config", "label", "tenant", "runtime", "validation_status", "created_at"]
    list_filter = ["validation_status", "runtime"]
    search_fields = ["config__name", "tenant__app_id", "address", "manifest_digest"]
    list_select_related = ["config", "tenant", "runtime"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # immutable: the admin shows it, never edits it

    def delete_through(self, request, obj):
        services.model_config_version_delete(actor=operator_actor(request, obj.tenant), version=obj)
