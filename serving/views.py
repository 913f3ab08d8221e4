"""Web pages: the service list (live status), the deploy form, the service page (revisions,
instances, events, logs tail) and its action buttons. The same services as the API."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from serving import selectors, services
from serving.forms import DeployForm, ScaleForm, ScalingForm, UpdateForm
from serving.metrics.models import AutoscalerState
from serving.scheduling import InsufficientResources

ACTIONS = (
    "stop",
    "resume",
    "scale",
    "scaling",
    "update",
    "rollback",
    "delete",
    "rotate-token",
    "revoke-token",
    "auth-on",
    "auth-off",
)


def _actor(request):
    actor = getattr(request, "actor", None)
    if actor is None:
        raise PermissionDenied("You have no active membership in an account.")
    return actor


def _add_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        aliases = {
            "group": "resource_group",
            "cpu_millicores": "cpu_cores",
            "min": "min_replicas",
            "start": "start_replicas",
            "triggers": "trigger_cpu",
        }
        for field, errors in exc.error_dict.items():
            field = aliases.get(field, field)
            for error in errors:
                for message in error.messages:
                    form.add_error(field if field in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


@login_required
@require_http_methods(["GET"])
def service_list(request):
    actor = _actor(request)
    rows = selectors.services(actor=actor)
    return render(request, "serving/service_list.html", {"services": rows})


@login_required
@require_http_methods(["GET", "POST"])
def service_create(request):
    actor = _actor(request)
    form = DeployForm(request.POST or None, actor=actor)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        cpu = data.get("cpu_cores")
        size = services.InstanceSize(
            cpu_millicores=int(cpu * 1000) if cpu else 0,
            memory_mib=data.get("memory_mib") or 0,
            gpus=data.get("gpus") or 0,
            quota_type=data.get("quota_type") or "",
            quota_count=data.get("quota_count") or 0,
        )
        scaling = services.Scaling(
            mode=data["scaling_mode"],
            replicas=data.get("replicas") or 1,
            min=1 if data.get("min_replicas") is None else data["min_replicas"],
            max=data.get("max_replicas") or 1,
            start=data.get("start_replicas") or 1,
            triggers=form.triggers(),
        )
        try:
            service = services.service_deploy(
                actor=actor,
                version=data["version"],
                group=data["resource_group"],
                name=data["name"],
                size=size,
                scaling=scaling,
                auth_enabled=data["auth_enabled"],
            )
        except InsufficientResources as exc:
            form.add_error("resource_group", exc.message)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Deploying {service.name} ({service.service_id}).")
            return redirect("serving:service-detail", service_id=service.service_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "serving/service_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET"])
def service_detail(request, service_id: str):
    actor = _actor(request)
    service = get_object_or_404(
        selectors.services(actor=actor, action="ems:DescribeService"), service_id=service_id
    )
    context = {
        "service": service,
        "revisions": service.revisions.select_related("version").order_by("-number"),
        "instances": selectors.instances(service=service)[:50],
        "events": service.events.order_by("-created_at", "-id")[:50],
        "logs": selectors.logs(service=service, tail=50),
        "limits_enforced": all(node.backend != "process" for node in service.group.nodes.all()),
        "scale_form": ScaleForm(initial={"replicas": max(service.replicas, 1)}),
        "scaling_form": ScalingForm.for_service(service),
        "last_decision": AutoscalerState.objects.filter(service=service)
        .values_list("last_decision", flat=True)
        .first(),
        "update_form": UpdateForm(service=service, actor=actor),
    }
    return render(request, "serving/service_detail.html", context)


@login_required
@require_http_methods(["POST"])
def service_action(request, service_id: str, action: str):
    actor = _actor(request)
    if action not in ACTIONS:
        raise Http404
    service = get_object_or_404(
        selectors.services(actor=actor, action="ems:DescribeService"), service_id=service_id
    )
    try:
        if action == "stop":
            services.service_stop(actor=actor, service=service)
        elif action == "resume":
            services.service_resume(actor=actor, service=service)
        elif action == "rollback":
            services.service_rollback(actor=actor, service=service)
        elif action == "delete":
            services.service_delete(actor=actor, service=service)
            messages.success(request, f"Deleting {service.name}.")
            return redirect("serving:service-list")
        elif action in ("rotate-token", "revoke-token", "auth-on", "auth-off"):
            from serving import access

            if action == "rotate-token":
                access.service_token_rotate(actor=actor, service=service)
            elif action == "revoke-token":
                access.service_token_revoke(actor=actor, service=service)
            else:
                access.service_set_auth(actor=actor, service=service, enabled=action == "auth-on")
            messages.success(request, f"{action.replace('-', ' ').capitalize()}: done.")
            return redirect("serving:service-invoke", service_id=service.service_id)
        elif action == "scale":
            form = ScaleForm(request.POST)
            if not form.is_valid():
                raise ValidationError("Give the number of instances (at least 1).")
            services.service_scale(
                actor=actor, service=service, replicas=form.cleaned_data["replicas"]
            )
        elif action == "scaling":
            form = ScalingForm(request.POST)
            if not form.is_valid():
                raise ValidationError(
                    "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
                )
            services.service_set_scaling(
                actor=actor, service=service, scaling=form.scaling(service)
            )
        elif action == "update":
            form = UpdateForm(request.POST, service=service, actor=actor)
            if not form.is_valid():
                raise ValidationError("Pick a version of the service's config.")
            services.service_update(
                actor=actor, service=service, version=form.cleaned_data["version"]
            )
    except InsufficientResources as exc:
        messages.error(request, exc.message)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{action.capitalize()} requested for {service.name}.")
    return redirect("serving:service-detail", service_id=service.service_id)


# The methods each page answers (the isolation walk reads them).
service_list.http_methods = ("GET",)
service_create.http_methods = ("GET", "POST")
service_detail.http_methods = ("GET",)
service_action.http_methods = ("POST",)
