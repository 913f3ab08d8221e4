"""The operator admin: regions and public runtimes are managed here; configs and versions are
shown read-only (a version never changes; one in use cannot be deleted)."""

from django.contrib import admin, messages

from models_repo.models import ModelConfig, ModelConfigVersion, Region, RuntimeEnvironment
from models_repo.services import version_in_use


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
class ModelConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "region", "last_version", "created_at"]
    list_filter = ["region"]
    search_fields = ["name", "tenant__app_id", "tenant__name"]
    readonly_fields = ["tenant", "name", "region", "description", "created_by", "created_at"]
    inlines = [VersionInline]

    def has_add_permission(self, request):
        return False  # configs are made by tenants, with their first version

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None and any(version_in_use(v) for v in obj.versions.all()):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(ModelConfigVersion)
class ModelConfigVersionAdmin(admin.ModelAdmin):
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

    def has_delete_permission(self, request, obj=None):
        if obj is not None and version_in_use(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request, queryset):
        used = [v for v in queryset if version_in_use(v)]
        if used:
            self.message_user(request, "Versions in use were not deleted.", messages.ERROR)
        queryset.exclude(pk__in=[v.pk for v in used]).delete()
