"""The tenant admin site (``/tenant-admin/``): a main account's own sub-accounts,
collaborators, policies, attachments and audit log — nothing else, scoped by the one engine.

Every queryset goes through ``for_actor``; foreign-key choices too; there are no relation list
filters (their choices would be unscoped), no bulk actions and no ``LogEntry`` writes (the audit
log records every change, through the services). A missing object is a 404.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from accounts import authz, policy, services
from accounts.models import AuditEvent, Membership, Policy, PolicyAttachment
from accounts.services.policies import _name
from portal import jsonlimits


class TenantAdminSite(admin.AdminSite):
    site_header = "account admin"
    site_title = "EMS Portal account admin"
    index_title = "Your account"
    name = "tenant_admin"
    enable_nav_sidebar = False
    index_template = "accounts/tenant_admin/index.html"

    def has_permission(self, request):
        actor = getattr(request, "actor", None)
        return bool(request.user.is_active and actor is not None and actor.kind == actor.MAIN)

    def login(self, request, extra_context=None):
        if request.user.is_authenticated:  # logged in, but not a main account: say so
            raise PermissionDenied(
                "The account admin is for the main account only. Your sub-account uses the "
                "portal's pages its policies allow; ask the main account for more."
            )
        return redirect(f"{reverse('accounts:login')}?next={request.get_full_path()}")


tenant_admin_site = TenantAdminSite(name="tenant_admin")


class ScopedAdmin(admin.ModelAdmin):
    """Rows and choices through ``for_actor``; writes through services only."""

    read_action = "accounts:ListSubAccounts"
    actions = None

    def get_queryset(self, request):
        return self.model.objects.for_actor(getattr(request, "actor", None), self.read_action)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if hasattr(related.objects, "for_actor"):
            kwargs["queryset"] = related.objects.for_actor(request.actor, self.read_action)
        else:
            kwargs["queryset"] = related.objects.none()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404("No such object in this account.")

    def log_addition(self, *args, **kwargs):  # the services write the audit log
        return None

    def log_change(self, *args, **kwargs):
        return None

    def log_deletions(self, *args, **kwargs):
        return None

    def log_deletion(self, *args, **kwargs):
        return None

    def _require(self, request, object_id):
        if self.get_object(request, unquote(object_id)) is None:
            raise Http404("No such object in this account.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._require(request, object_id)  # before any permission answer: 404, never 403
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._require(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._require(request, object_id)
        return redirect(reverse("accounts:audit"))

    def object_redirect(self, request, object_id):
        self._require(request, object_id)
        opts = self.model._meta
        return redirect(
            reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[object_id],
            )
        )

    def get_urls(self):
        from django.urls import path

        urls = [u for u in super().get_urls() if str(u.pattern) != "<path:object_id>/"]
        view = self.admin_site.admin_view(self.object_redirect)
        view.http_methods = ("GET",)
        return [*urls, path("<path:object_id>/", view)]

    def has_module_permission(self, request):
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request):
        return self.admin_site.has_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request, obj=None):
        return (
            authz.is_allowed(
                request.actor,
                self.read_action,
                obj
                if obj is not None
                else authz.resource_name(request.actor.tenant, self.model.resource_kind),
            )
            if getattr(request, "actor", None)
            else False
        )


class MemberAdmin(ScopedAdmin):
    list_display = ["name", "kind", "status", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name"]
    fields = ["name", "kind", "status", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(kind=Membership.MAIN)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        if obj.kind == Membership.SUB:
            services.sub_account_delete(actor=request.actor, member=obj)
        else:
            services.collaborator_remove(actor=request.actor, member=obj)


class PolicyForm(forms.ModelForm):
    document = jsonlimits.JSONFormField()

    class Meta:
        model = Policy
        fields = ["name", "description", "document"]

    actor = None  # set by PolicyAdmin.get_form

    def clean_name(self):
        try:
            return _name(self.actor, self.cleaned_data["name"], exclude_pk=self.instance.pk)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["name"]) from None

    def clean_document(self):
        try:
            return policy.validate(self.cleaned_data["document"])
        except policy.PolicyError as exc:
            raise ValidationError(str(exc)) from None


class PolicyAdmin(ScopedAdmin):
    form = PolicyForm
    read_action = "accounts:ListPolicies"
    list_display = ["name", "is_preset", "description", "updated_at"]
    search_fields = ["name"]

    def has_change_permission(self, request, obj=None):
        return obj is None or not obj.is_preset

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type("ScopedPolicyForm", (form,), {"actor": request.actor})

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.is_preset

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            services.policy_update(
                actor=request.actor,
                policy_row=obj,
                name=data["name"],
                document=data["document"],
                description=data["description"],
            )
        else:
            row = services.policy_create(
                actor=request.actor,
                name=data["name"],
                document=data["document"],
                description=data["description"],
            )
            obj.pk = row.pk

    def delete_model(self, request, obj):
        services.policy_delete(actor=request.actor, policy_row=obj)


class AttachmentForm(forms.ModelForm):
    class Meta:
        model = PolicyAttachment
        fields = ["membership", "policy"]

    def clean(self):
        data = super().clean()
        member, policy_row = data.get("membership"), data.get("policy")
        if member is not None and member.kind == Membership.MAIN:
            raise ValidationError("The main account needs no policy.")
        if (
            member
            and policy_row
            and PolicyAttachment.objects.filter(membership=member, policy=policy_row).exists()
        ):
            raise ValidationError(f"{policy_row} is already attached to {member.name}.")
        return data

    def validate_unique(self):  # the service checks; tenant is not a form field
        return None


class AttachmentAdmin(ScopedAdmin):
    form = AttachmentForm
    read_action = "accounts:ListAttachedPolicies"
    list_display = ["membership", "policy", "created_at"]

    def has_change_permission(self, request, obj=None):
        return obj is None

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "policy":
            kwargs["queryset"] = Policy.objects.for_actor(request.actor, "accounts:ListPolicies")
            return admin.ModelAdmin.formfield_for_foreignkey(self, db_field, request, **kwargs)
        if db_field.name == "membership":
            kwargs["queryset"] = Membership.objects.for_actor(
                request.actor, "accounts:ListSubAccounts"
            ).exclude(kind=Membership.MAIN)
            return admin.ModelAdmin.formfield_for_foreignkey(self, db_field, request, **kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        row = services.policy_attach(
            actor=request.actor, member=obj.membership, policy_row=obj.policy
        )
        obj.pk = row.pk

    def delete_model(self, request, obj):
        services.policy_detach(actor=request.actor, member=obj.membership, policy_row=obj.policy)


class AuditAdmin(ScopedAdmin):
    read_action = "accounts:ListAuditEvents"
    list_display = ["created_at", "actor_label", "action", "resource", "outcome"]
    list_filter = ["outcome"]
    search_fields = ["action", "resource", "actor_label"]
    readonly_fields = ["created_at", "actor_label", "action", "resource", "outcome", "detail"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


tenant_admin_site.register(Membership, MemberAdmin)
tenant_admin_site.register(Policy, PolicyAdmin)
tenant_admin_site.register(PolicyAttachment, AttachmentAdmin)
tenant_admin_site.register(AuditEvent, AuditAdmin)
