"""The dashboard's getting-started panel: the five steps with this tenant's own state, each
linking to where it is done next, until the tenant has a service answering."""

from __future__ import annotations

from django import template
from django.urls import reverse

from accounts import service_role
from models_repo import selectors as repo
from serving import selectors as serving
from serving.models import Service

register = template.Library()


@register.inclusion_tag("portal/_getting_started.html")
def getting_started(actor):
    if actor is None:
        return {"steps": []}
    configs = list(
        repo.model_configs(actor=actor).prefetch_related("versions").order_by("name")[:6]
    )
    services = list(serving.services(actor=actor).order_by("-created_at")[:20])
    normal = next((s for s in services if s.status == Service.NORMAL), None)
    deploy_links = []
    for config in configs:
        latest = max(config.versions.all(), key=lambda v: v.number, default=None)
        if latest is not None:
            url = reverse("serving:service-create") + f"?version={latest.pk}&name={config.name}"
            deploy_links.append({"config": config, "version": latest, "url": url})
    steps = [
        {
            "title": "Authorize the service role",
            "done": service_role.is_authorized(actor.tenant),
            "url": reverse("accounts:service-role"),
        },
        {
            "title": "Create a model config",
            "done": bool(configs),
            "url": reverse("models_repo:config-create"),
        },
        {
            "title": "Deploy it as an online service",
            "done": bool(services),
            "url": reverse("serving:service-create"),
            "choices": deploy_links if not services else [],
        },
        {
            "title": "Call it",
            "done": False,
            "url": reverse("serving:service-invoke", args=[normal.service_id]) if normal else "",
            "service": normal,
        },
    ]
    return {"steps": steps, "finished": normal is not None, "services": services}
