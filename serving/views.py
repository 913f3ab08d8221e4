"""Web pages: the service list (live status), the deploy form, the service page (revisions,
instances, events, logs tail) and its action buttons. The same services as the API."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from accounts.door import By, page, page_object, require_actor
from models_repo.models import ModelConfig
from serving import access, selectors, services
from serving.forms import DeployForm, ScaleForm, ScalingForm, UpdateForm
from serving.metrics.models import AutoscalerState
from serving.models import Instance
from serving.scheduling import InsufficientResources

# The buttons of the service page: the URL's <action> and the catalogue action each needs.
ACTIONS = By(
    "action",
    {
        "stop": "ems:StopService",
        "resume": "ems:ResumeService",
        "scale": "ems:ScaleService",
        "scaling": "ems:ScaleService",
        "update": "ems:UpdateService",
        "rollback": "ems:RollbackService",
        "delete": "ems:DeleteService",
        "rotate-token": "ems:RotateServiceToken",
        "revoke-token": "ems:RevokeServiceToken",
        "auth-on": "ems:UpdateService",
        "auth-off": "ems:UpdateService",
    },
)


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


@page("GET", actions="ems:DescribeServices")
def service_list(request):
    actor = require_actor(request)
    rows = (
        selectors.services(actor=actor)
        .select_related("config", "group", "revision__version")
        .order_by("-created_at")
    )
    page = selectors.KeysFirstPaginator(rows, SERVICES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "services": page,
        "configs_exist": ModelConfig.objects.for_actor(actor, "ems:DescribeModelConfigs").exists(),
    }
    return render(request, "serving/service_list.html", context)


@page("GET", "POST", actions="ems:CreateService")
def service_create(request):
    actor = require_actor(request)
    # ?version=<id>&name=… preselects (the dashboard's one-click deploy of an example).
    initial = {k: request.GET[k] for k in ("version", "name") if request.GET.get(k)}
    form = DeployForm(request.POST or None, actor=actor, initial=initial)
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
            form.add_error(
                "resource_group",
                f"{exc.message}. Pick a smaller instance size or fewer instances, another "
                "resource group, or stop a service running on this one.",
            )
        except services.ServiceIdUnavailable as exc:
            form.add_error(None, exc.message)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Deploying {service.name} ({service.service_id}).")
            return redirect("serving:service-detail", service_id=service.service_id)
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "choices_info": form.choices_info(), "shown_fields": SHOWN_FIELDS}
    return render(request, "serving/service_form.html", context, status=status)


def _service(request, service_id: str):
    return page_object(
        request,
        selectors.services(actor=require_actor(request), action="ems:DescribeService"),
        service_id=service_id,
    )


@page("GET", actions="ems:DescribeService", object=True)
def service_detail(request, service_id: str):
    actor = require_actor(request)
    service = _service(request, service_id)
    show_all = request.GET.get("instances") == "all"
    events = Paginator(service.events.order_by("-created_at", "-id"), EVENTS_PER_PAGE)
    context = {
        "service": service,
        "state": service_state(service),
        "ready": service.instances.filter(state=Instance.RUNNING).count(),
        "rollback_to": selectors.rollback_target(service),
        "revisions": service.revisions.select_related("version").order_by("-number")[:20],
        "instances": selectors.instances(service=service, live_only=not show_all)[:50],
        "show_all_instances": show_all,
        "events": events.get_page(request.GET.get("events")),
        "logs": selectors.logs(service=service, tail=50),
        "limits_enforced": all(node.backend != "process" for node in service.group.nodes.all()),
        "scale_form": ScaleForm(initial={"replicas": max(service.replicas, 1)}),
        "scaling_form": ScalingForm.for_service(service),
        "last_decision": AutoscalerState.objects.filter(service=service)
        .values_list("last_decision", flat=True)
        .first(),
        "update_form": UpdateForm(service=service, actor=actor),
    }
    from billing.bills import service_cost  # billing: the cost line

    context["cost"] = service_cost(service)
    return render(request, "serving/service_detail.html", context)


EVENTS_PER_PAGE = 20
# The deploy form's fields its template places itself (any other field is listed after them).
SHOWN_FIELDS = (
    "service_type", "name", "region", "version", "resource_group", "quota_type", "quota_count",
    "cpu_cores", "memory_mib", "gpus", "scaling_mode", "replicas", "min_replicas",
    "max_replicas", "start_replicas", "trigger_cpu", "trigger_memory", "trigger_gpu",
    "trigger_qps", "auth_enabled",
)  # fmt: skip
SERVICES_PER_PAGE = 50


def service_state(service) -> dict:
    """What the service's state allows, so the page offers only those buttons."""
    running = service.desired == service.RUN
    busy = service.status in (service.STOPPING, service.RESUMING)
    return {
        "can_stop": running and service.status != service.STOPPED and not busy,
        "can_resume": not running and service.status == service.STOPPED,
        "can_change": running and service.status not in (service.STOPPING, service.FAILED),
        "can_scale": running and service.scaling_mode == service.MANUAL,
    }


@page("POST", actions=ACTIONS, object=True)
def service_action(request, service_id: str, action: str):
    actor = require_actor(request)
    service = _service(request, service_id)
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
