"""The services API: deploy, read, act; policies decide; other tenants see nothing."""

from __future__ import annotations

import pytest

from serving.models import Instance, Service
from tests.serving.conftest import converge, status_is


def _deploy_body(version, group, **extra):
    return {
        "name": "api-lr",
        "version": version.pk,
        "resource_group": group.pk,
        "cpu_millicores": 500,
        "memory_mib": 512,
        "replicas": 1,
        **extra,
    }


def test_deploy_read_and_act_over_the_api(owner, angel_version, dedicated):
    answer = owner.api.post(
        "/api/v1/services/", _deploy_body(angel_version, dedicated), format="json"
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    sid = body["service_id"]
    assert body["status"] == "Waiting" and body["revision"]["version"] == "1.0"
    service = Service.objects.get(service_id=sid)
    converge(service, status_is(Service.NORMAL))

    listed = owner.api.get("/api/v1/services/").json()
    assert [s["service_id"] for s in listed["results"]] == [sid]
    detail = owner.api.get(f"/api/v1/services/{sid}/").json()
    assert detail["status"] == "Normal" and detail["instances_ready"] == 1
    instances = owner.api.get(f"/api/v1/services/{sid}/instances/").json()["results"]
    assert instances[0]["state"] == "running" and instances[0]["started_at"]
    events = owner.api.get(f"/api/v1/services/{sid}/events/").json()["results"]
    assert {"scheduled", "started", "healthy"} <= {e["kind"] for e in events}
    logs = owner.api.get(f"/api/v1/services/{sid}/logs/?tail=5").json()
    assert logs[0]["instance_id"] == instances[0]["instance_id"]

    too_many = owner.api.post(f"/api/v1/services/{sid}/scale/", {"replicas": 50}, format="json")
    assert too_many.status_code == 409
    assert "insufficient resources: needs" in too_many.json()["detail"]

    assert owner.api.post(f"/api/v1/services/{sid}/stop/").status_code == 200
    converge(service, status_is(Service.STOPPED))
    resumed = owner.api.post(f"/api/v1/services/{sid}/resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == "Resuming"
    converge(service, status_is(Service.NORMAL))
    assert owner.api.post(f"/api/v1/services/{sid}/rollback/").status_code == 400
    assert owner.api.delete(f"/api/v1/services/{sid}/").status_code == 204
    converge(service, status_is(Service.STOPPED))
    assert owner.api.get(f"/api/v1/services/{sid}/").status_code == 404
    assert not Instance.objects.filter(service=service, state__in=Instance.LIVE).exists()


def test_validation_messages(owner, angel_version, dedicated):
    bad = owner.api.post(
        "/api/v1/services/",
        _deploy_body(angel_version, dedicated, cpu_millicores=50),
        format="json",
    )
    assert bad.status_code == 400 and "cpu_millicores" in bad.json()
    gpu = owner.api.post(
        "/api/v1/services/", _deploy_body(angel_version, dedicated, gpus=1), format="json"
    )
    assert gpu.status_code == 409 and "needs 1 GPU, the group" in gpu.json()["detail"]
    auto = owner.api.post(
        "/api/v1/services/",
        _deploy_body(
            angel_version,
            dedicated,
            scaling_mode="auto",
            min_replicas=1,
            max_replicas=3,
            start_replicas=1,
            triggers=[],
        ),
        format="json",
    )
    assert auto.status_code == 400 and "triggers" in auto.json()


def test_policies_and_tenants(owner, outsider, make_sub_account, angel_version, dedicated):
    service = owner.api.post(
        "/api/v1/services/", _deploy_body(angel_version, dedicated), format="json"
    ).json()
    sid = service["service_id"]
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    assert reader.api.get(f"/api/v1/services/{sid}/").status_code == 200
    assert reader.api.post(f"/api/v1/services/{sid}/stop/").status_code == 403
    assert (
        reader.api.post(
            "/api/v1/services/", _deploy_body(angel_version, dedicated, name="r2"), format="json"
        ).status_code
        == 403
    )
    # another tenant: nothing exists, not even the resource group or the version
    assert outsider.api.get(f"/api/v1/services/{sid}/").status_code == 404
    assert outsider.api.post(f"/api/v1/services/{sid}/stop/").status_code == 404
    assert outsider.api.get("/api/v1/services/").json()["results"] == []
    groups = outsider.api.get("/api/v1/resource-groups/").json()["results"]
    assert dedicated.pk not in [g["id"] for g in groups]
    stolen = outsider.api.post(
        "/api/v1/services/", _deploy_body(angel_version, dedicated, name="steal"), format="json"
    )
    assert stolen.status_code == 400
    assert Service.objects.count() == 1


@pytest.mark.django_db
def test_schema_has_the_serving_resources(owner):
    schema = owner.api.get("/api/schema/?format=json").json()
    for path in (
        "/api/v1/services/",
        "/api/v1/services/{service_id}/update/",
        "/api/v1/resource-groups/",
    ):
        assert path in schema["paths"]


def test_deploy_with_no_free_service_id_is_a_clear_503(
    owner, angel_version, dedicated, monkeypatch
):
    """Five id collisions in a row used to leave ``service`` unbound (a 500)."""
    first = owner.api.post(
        "/api/v1/services/", _deploy_body(angel_version, dedicated), format="json"
    )
    assert first.status_code == 201, first.json()
    taken = first.json()["service_id"]
    field = Service._meta.get_field("service_id")
    monkeypatch.setattr(field, "_get_default", lambda: taken)  # every new id collides
    answer = owner.api.post(
        "/api/v1/services/", _deploy_body(angel_version, dedicated, name="second"), format="json"
    )
    assert answer.status_code == 503, answer.content
    body = answer.json()
    assert body["code"] == "service_id_unavailable" and "Try again" in body["detail"]
    assert answer["Retry-After"] == "1"
    assert list(Service.objects.values_list("name", flat=True)) == ["api-lr"]
    assert not Instance.objects.exclude(service__service_id=taken).exists()
