"""The operator admin (``/admin/``): every accounts model, every tenant. Tenants' main accounts
use the separate, scoped site in ``accounts.tenant_admin``."""

from django.contrib import admin

from accounts import models


@admin.register(models.Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["app_id", "name", "created_at"]
    search_fields = ["app_id", "name"]
    readonly_fields = ["app_id", "created_at"]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "tenant", "user"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "user__username", "user__email", "tenant__app_id"]
    raw_id_fields = ["user", "tenant"]


@admin.register(models.Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "updated_at"]
    search_fields = ["name", "tenant__app_id"]
    raw_id_fields = ["tenant"]


@admin.register(models.PolicyAttachment)
class PolicyAttachmentAdmin(admin.ModelAdmin):
    list_display = ["policy", "membership", "tenant", "created_at"]
    raw_id_fields = ["tenant", "policy", "membership", "attached_by"]


@admin.register(models.ServiceRoleAuthorization)
class ServiceRoleAuthorizationAdmin(admin.ModelAdmin):
    list_display = ["tenant", "role_name", "authorized_by", "authorized_at", "revoked_at"]
    raw_id_fields = ["tenant", "authorized_by", "revoked_by"]


@admin.register(models.TenantStorageCredential)
class TenantStorageCredentialAdmin(admin.ModelAdmin):
    list_display = ["tenant", "masked_key_id", "endpoint_url", "updated_at"]
    exclude = ["access_key_id"]
    readonly_fields = ["masked_key_id", "updated_at"]
    raw_id_fields = ["tenant", "updated_by"]


@admin.register(models.ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "membership", "tenant", "last_used_at", "revoked_at"]
    raw_id_fields = ["tenant", "membership"]


@admin.register(models.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "actor_label", "action", "resource", "outcome"]
    list_filter = ["outcome"]
    search_fields = ["action", "resource", "actor_label", "tenant__app_id"]
    raw_id_fields = ["tenant", "actor"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False
