"""Pieces every operator admin uses to write through the services (never rows directly).

- ``ServiceForm``: a model form whose ``clean()`` calls the service (inside the admin's own
  transaction, in a savepoint); the service's ``ValidationError`` becomes form errors, on the
  named field when the form has it. The admin then saves nothing itself.
- ``DeleteThroughServices``: delete goes through ``delete_through`` (a refusal is a message,
  never a 500); no bulk delete. ``ThroughServicesAdmin`` adds: add/change through
  ``ServiceForm``.
- ``operator_actor(request, tenant)``: the operator acting inside ``tenant``.
- ``log_operator``: what an operator did through a service (a deletion, an action such as a
  node's drain) goes in the admin's history like the admin's own saves.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from accounts.actor import PlatformActor


def operator_actor(request, tenant) -> PlatformActor:
    return PlatformActor(tenant, operator=request.user)


def apply_errors(form: forms.Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            for error in errors:
                for message in error.messages:
                    form.add_error(field if field in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


def error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return " ".join(m for errs in exc.error_dict.values() for e in errs for m in e.messages)
    return " ".join(exc.messages)


class ServiceForm(forms.ModelForm):
    """``call_service(data)`` does the write; ``request`` is set by the admin."""

    request = None
    result = None

    def call_service(self, data):  # pragma: no cover - each form overrides
        raise NotImplementedError

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            with transaction.atomic():
                self.result = self.call_service(data)
        except ValidationError as exc:
            apply_errors(self, exc)
        return data

    def _post_clean(self):  # the service validated (and wrote); no second model validation
        return None


def log_operator(request, obj, message: str, *, flag=CHANGE, pk=None, label=None) -> None:
    """One row of the admin's history (``LogEntry``: user, time, object, message) for an
    operator's action that went through a service rather than the admin's own save/delete."""
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk if pk is None else pk),
        object_repr=(str(obj) if label is None else label)[:200],
        action_flag=flag,
        change_message=message,
    )


class DeleteThroughServices(admin.ModelAdmin):
    """Deleting calls ``delete_through`` (a service); its refusal is a message on the object's
    page, never a 500. No bulk delete (each deletion is its own service call)."""

    def delete_through(self, request, obj) -> None:  # pragma: no cover - overridden
        raise PermissionDenied

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        if request.method != "POST":
            return super().delete_view(request, object_id, extra_context)
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such object.")
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        opts = self.model._meta
        pk, label = obj.pk, str(obj)
        try:
            self.delete_through(request, obj)
        except ValidationError as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
            return redirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            )
        log_operator(request, obj, "deleted", flag=DELETION, pk=pk, label=label)
        self.message_user(request, f"Deleted {opts.verbose_name} “{obj}”.", messages.SUCCESS)
        return redirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))


class ThroughServicesAdmin(DeleteThroughServices):
    """Add and change through a ``ServiceForm``, delete through ``delete_through``."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if issubclass(form, ServiceForm):
            return type(form.__name__, (form,), {"request": request})
        return form

    def save_form(self, request, form, change):
        if isinstance(form, ServiceForm):
            return form.result if form.result is not None else form.instance
        return super().save_form(request, form, change)

    def save_model(self, request, obj, form, change):
        if not isinstance(form, ServiceForm):
            raise PermissionDenied("This admin writes through the services only.")

    def save_related(self, request, form, formsets, change):
        return None
