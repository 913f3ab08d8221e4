"""The operator admin (``/admin/``): every accounts model, every tenant — the operator's console.

It goes through the same services as the API (``accounts.admin_base``): a tenant made here gets
an app id and a main account (the sign-up service); policies are validated with the same
path-named errors; attachments stay inside one tenant; suspending and reinstating a tenant are
actions; every change is audited in the tenant's log with the operator as the actor. Rows that
only tenants create (members, keys, consents, credentials, the audit log) are read-only here;
members are deleted and keys revoked through the services. Tenants' main accounts use the
separate, scoped site in ``accounts.tenant_admin``.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError

from accounts import models, services
from accounts.admin_base import (
    ServiceForm,
    ThroughServicesAdmin,
    error_text,
    operator_actor,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- tenants -----------------------------------------------------------------------------------
class TenantCreateForm(ServiceForm):
    """A tenant and its main account, made by the sign-up service."""

    username = forms.CharField(max_length=150, help_text="The main account's username.")
    email = forms.EmailField(help_text="The main account's email.")
    password = forms.CharField(
        widget=forms.PasswordInput, help_text="The main account's first password."
    )

    class Meta:
        model = models.Tenant
        fields = ["name"]

    def call_service(self, data):
        member = services.tenant_create(
            operator=self.request.user,
            name=data["name"],
            username=data["username"],
            email=data["email"],
            password=data["password"],
        )
        return member.tenant


class TenantViewForm(ServiceForm):
    class Meta:
        model = models.Tenant
        fields = []

    def call_service(self, data):
        return self.instance


class SuspendActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=300,
        label="Reason (suspend)",
        help_text="Shown to the tenant's callers and users.",
    )


@admin.register(models.Tenant)
class TenantAdmin(ThroughServicesAdmin):
    list_display = ["app_id", "name", "main_account", "state", "created_at"]
    search_fields = ["app_id", "name", "memberships__user__username"]
    list_filter = [("suspended_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["app_id", "name", "created_at", "suspended_at", "suspension_reason"]
    action_form = SuspendActionForm
    actions = ["suspend", "reinstate"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = TenantCreateForm if obj is None else TenantViewForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "username", "email", "password"]
        return self.readonly_fields

    @admin.display(description="main account")
    def main_account(self, tenant) -> str:
        main = tenant.memberships.filter(kind=models.Membership.MAIN).first()
        return main.name if main else "—"

    @admin.display(description="state")
    def state(self, tenant) -> str:
        return f"suspended: {tenant.suspension_reason}" if tenant.is_suspended else "active"

    @admin.action(description="Suspend: stop services, refuse logins, keys and endpoints")
    def suspend(self, request, queryset):
        reason = request.POST.get("reason", "")
        for tenant in queryset:
            try:
                services.tenant_suspend(operator=request.user, tenant=tenant, reason=reason)
            except ValidationError as exc:
                self.message_user(request, f"{tenant}: {error_text(exc)}", messages.ERROR)
            else:
                self.message_user(request, f"{tenant} suspended.", messages.SUCCESS)

    @admin.action(description="Reinstate suspended tenants")
    def reinstate(self, request, queryset):
        for tenant in queryset:
            try:
                services.tenant_reinstate(operator=request.user, tenant=tenant)
            except ValidationError as exc:
                self.message_user(request, f"{tenant}: {error_text(exc)}", messages.ERROR)
            else:
                self.message_user(request, f"{tenant} reinstated.", messages.SUCCESS)

    def delete_through(self, request, obj):
        services.tenant_delete(operator=request.user, tenant=obj)


# --- members -----------------------------------------------------------------------------------
@admin.register(models.Membership)
class MembershipAdmin(ThroughServicesAdmin):
    list_display = ["name", "kind", "status", "tenant", "user"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "user__username", "user__email", "tenant__app_id"]
    fields = ["tenant", "user", "kind", "name", "status", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # tenants make their sub-accounts and invite collaborators

    def has_change_permission(self, request, obj=None):
        return False

    def delete_through(self, request, obj):
        actor = operator_actor(request, obj.tenant)
        if obj.kind == models.Membership.SUB:
            services.sub_account_delete(actor=actor, member=obj)
        elif obj.kind == models.Membership.COLLABORATOR:
            services.collaborator_remove(actor=actor, member=obj)
        else:
            raise ValidationError("The main account goes with its tenant: delete the tenant.")


# --- policies and attachments ------------------------------------------------------------------
class PolicyForm(ServiceForm):
    class Meta:
        model = models.Policy
        fields = ["tenant", "name", "description", "document"]

    def call_service(self, data):
        if self.instance.pk:
            return services.policy_update(
                actor=operator_actor(self.request, self.instance.tenant),
                policy_row=self.instance,
                name=data["name"],
                document=data["document"],
                description=data.get("description", ""),
            )
        if data.get("tenant") is None:
            raise ValidationError({"tenant": ["Pick the tenant the policy belongs to."]})
        return services.policy_create(
            actor=operator_actor(self.request, data["tenant"]),
            name=data["name"],
            document=data["document"],
            description=data.get("description", ""),
        )


@admin.register(models.Policy)
class PolicyAdmin(ThroughServicesAdmin):
    form = PolicyForm
    list_display = ["name", "tenant", "updated_at"]
    search_fields = ["name", "tenant__app_id"]
    raw_id_fields = ["tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant"] if obj is not None else []

    def has_change_permission(self, request, obj=None):
        return obj is None or not obj.is_preset  # presets ship with the platform (bootstrap)

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.is_preset

    def delete_through(self, request, obj):
        services.policy_delete(actor=operator_actor(request, obj.tenant), policy_row=obj)


class AttachmentForm(ServiceForm):
    class Meta:
        model = models.PolicyAttachment
        fields = ["membership", "policy"]

    def call_service(self, data):
        member = data["membership"]
        return services.policy_attach(
            actor=operator_actor(self.request, member.tenant),
            member=member,
            policy_row=data["policy"],
        )


@admin.register(models.PolicyAttachment)
class PolicyAttachmentAdmin(ThroughServicesAdmin):
    form = AttachmentForm
    list_display = ["policy", "membership", "tenant", "created_at"]
    raw_id_fields = ["policy", "membership"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # detach and attach again

    def delete_through(self, request, obj):
        services.policy_detach(
            actor=operator_actor(request, obj.tenant),
            member=obj.membership,
            policy_row=obj.policy,
        )


# --- what tenants own and operators only look at -----------------------------------------------
@admin.register(models.ServiceRoleAuthorization)
class ServiceRoleAuthorizationAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "role_name", "authorized_by", "authorized_at", "revoked_at"]


@admin.register(models.TenantStorageCredential)
class TenantStorageCredentialAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "masked_key_id", "endpoint_url", "updated_at"]
    fields = ["tenant", "masked_key_id", "endpoint_url", "updated_by", "updated_at"]
    readonly_fields = fields


@admin.register(models.ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "prefix", "membership", "tenant", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # for the revoke action; no field is editable

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(actor=operator_actor(request, key.tenant), api_key=key)
        self.message_user(request, "Revoked.", messages.SUCCESS)


@admin.register(models.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "actor_label", "action", "resource", "outcome"]
    list_filter = ["outcome"]
    search_fields = ["action", "resource", "actor_label", "tenant__app_id"]
