"""The deploy form, the service list and the service page."""

from __future__ import annotations

from serving.models import Service
from tests.serving.conftest import converge, status_is


def _form(version, group, **extra):
    return {
        "service_type": "online",
        "name": "web-lr",
        "region": "ap-beijing",
        "version": version.pk,
        "resource_group": group.pk,
        "cpu_cores": "0.5",
        "memory_mib": 512,
        "gpus": 0,
        "scaling_mode": "manual",
        "replicas": 1,
        **extra,
    }


def test_deploy_form_list_and_detail(owner, angel_version, dedicated):
    page = owner.client.get("/services/new/")
    assert page.status_code == 200
    html = page.content.decode()
    for name in (
        "name",
        "region",
        "version",
        "resource_group",
        "quota_type",
        "quota_count",
        "cpu_cores",
        "memory_mib",
        "gpus",
        "scaling_mode",
        "replicas",
        "min_replicas",
        "max_replicas",
        "start_replicas",
        "trigger_cpu",
        "trigger_memory",
        "trigger_gpu",
        "auth_enabled",
    ):
        assert f'name="{name}"' in html, name
    answer = owner.client.post("/services/new/", _form(angel_version, dedicated))
    assert answer.status_code == 302
    service = Service.objects.get(name="web-lr")
    assert answer["Location"] == f"/services/{service.service_id}/"
    assert service.revision.cpu_millicores == 500
    converge(service, status_is(Service.NORMAL))
    listing = owner.client.get("/services/").content.decode()
    assert service.service_id in listing and 'data-status="Normal"' in listing
    detail = owner.client.get(f"/services/{service.service_id}/").content.decode()
    for text in ("Revisions", "Instances", "Events", "Logs", "healthy", "limits are not enforced"):
        assert text in detail, text
    stop = owner.client.post(f"/services/{service.service_id}/stop/")
    assert stop.status_code == 302
    converge(service, status_is(Service.STOPPED))


def test_deploy_form_explains_mistakes(owner, angel_version, dedicated, outsider):
    answer = owner.client.post(
        "/services/new/", _form(angel_version, dedicated, region="ap-shanghai", replicas=9)
    )
    assert answer.status_code == 400
    html = answer.content.decode()
    assert "is in ap-beijing" in html
    answer = owner.client.post("/services/new/", _form(angel_version, dedicated, replicas=9))
    assert answer.status_code == 400 and "insufficient resources: needs" in answer.content.decode()
    assert not Service.objects.exists()
    # another tenant's version and group are simply not choices
    answer = outsider.client.post("/services/new/", _form(angel_version, dedicated))
    assert answer.status_code == 400 and not Service.objects.exists()
