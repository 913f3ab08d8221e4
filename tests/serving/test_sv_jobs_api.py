"""The batch-jobs API: create, read, cancel, estimate; validation that says what to fix;
policies decide; other tenants see nothing; a job's backing service is no online service."""

from __future__ import annotations

import pytest

from serving.jobs.models import Job, JobFile
from serving.models import Service
from tests.serving import jobs_flow as flow


@pytest.fixture
def inputs(owner, serving_env):
    return flow.seed_inputs(owner.tenant)


def _body(version, group, source, target, **extra):
    return {
        "name": "nightly",
        "version": version.pk,
        "resource_group": group.pk,
        "cpu_millicores": 500,
        "memory_mib": 512,
        "workers": 2,
        "input": source,
        "output": target,
        "batch_size": 16,
        "max_failed": 3,
        **extra,
    }


def test_create_read_cancel(owner, angel_version, dedicated, inputs):
    source, target, _ = inputs
    answer = owner.api.post(
        "/api/v1/jobs/", _body(angel_version, dedicated, source, target), format="json"
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    jid = body["job_id"]
    assert jid.startswith("job-") and body["status"] == "Waiting"
    assert (body["workers"], body["batch_size"], body["max_failed"]) == (2, 16, 3)
    assert body["size"]["cpu_millicores"] == 500 and body["input"] == source
    assert (body["done"], body["total"], body["failed"], body["rate"]) == (0, 0, 0, None)
    job = Job.objects.get(job_id=jid)
    assert job.service.kind == Service.BATCH and job.service.service_id == jid
    assert job.service.instances.count() == 2
    files = owner.api.get(f"/api/v1/jobs/{jid}/files/").json()["results"]
    assert [(f["input_key"], f["output_key"]) for f in files] == [
        ("in/a.jsonl", "out/a.jsonl.out"),
        ("in/c.json", "out/c.json.out"),
        ("in/sub/b.jsonl", "out/sub/b.jsonl.out"),
    ]
    assert [f["format"] for f in files] == ["jsonl", "json", "jsonl"]

    listed = owner.api.get("/api/v1/jobs/").json()["results"]
    assert [j["job_id"] for j in listed] == [jid]
    # the backing service is not an online service: no list, page or API shows it
    assert owner.api.get("/api/v1/services/").json()["results"] == []
    assert owner.api.get(f"/api/v1/services/{jid}/").status_code == 404
    events = owner.api.get(f"/api/v1/jobs/{jid}/events/").json()["results"]
    assert [e["kind"] for e in events] == ["created"]
    assert len(owner.api.get(f"/api/v1/jobs/{jid}/instances/").json()["results"]) == 2

    cancelled = owner.api.post(f"/api/v1/jobs/{jid}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "Cancelled"
    assert cancelled.json()["ended_at"]
    again = owner.api.post(f"/api/v1/jobs/{jid}/cancel/")
    assert again.status_code == 400 and "already ended" in str(again.json())
    job.service.refresh_from_db()
    assert job.service.desired == Service.DELETE
    assert not job.service.instances.filter(state__in=("pending", "starting", "running")).exists()


def _error(answer, field):
    assert answer.status_code == 400, answer.json()
    return " ".join(answer.json()[field]) if field in answer.json() else str(answer.json())


def test_validation_says_what_to_fix(owner, angel_version, dedicated, inputs):
    source, target, _ = inputs
    app = owner.tenant.app_id
    from io import BytesIO

    from tests.models_repo.conftest import tenant_store

    tenant_store(owner.tenant).write(f"data-{app}", "in/notes.txt", BytesIO(b"notes"))
    bucket = f"cos://data-{app}.cos.ap-beijing.myqcloud.com/"

    def post(**extra):
        return owner.api.post(
            "/api/v1/jobs/", _body(angel_version, dedicated, source, target, **extra), format="json"
        )

    shanghai = f"cos://data-{app}.cos.ap-shanghai.myqcloud.com/in/"
    assert "is in ap-shanghai" in _error(post(input=shanghai), "input")
    assert "no file in/missing.jsonl" in _error(post(input=bucket + "in/missing.jsonl"), "input")
    assert "in/sub is a folder: end its address with '/'" in _error(
        post(input=bucket + "in/sub"), "input"
    )
    assert "neither a .jsonl nor a .json" in _error(post(input=bucket + "in/notes.txt"), "input")
    assert "holds no .jsonl or .json" in _error(post(input=bucket + "nothing/"), "input")
    other = "cos://data-1.cos.ap-beijing.myqcloud.com/in/"
    assert "not to this account" in _error(post(input=other), "input")
    assert "ends in '/'" in _error(post(output=bucket + "out"), "output")
    missing = f"cos://nobucket-{app}.cos.ap-beijing.myqcloud.com/out/"
    assert "no bucket nobucket" in _error(post(output=missing), "output")
    assert "not to this account" in _error(post(output=other.replace("in/", "out/")), "output")
    assert "worker (instance) count is 1 to 32" in _error(post(workers=99), "workers")
    assert "batch size is 1 to 4096" in _error(post(batch_size=5000), "batch_size")
    assert "is 100 to 256000 millicores" in _error(post(cpu_millicores=50), "cpu_millicores")
    nothing = owner.api.post(
        "/api/v1/jobs/",
        {**_body(angel_version, dedicated, source, target), "version": 10**6},
        format="json",
    )
    assert "No such config version" in _error(nothing, "version")
    assert Job.objects.count() == 0 and JobFile.objects.count() == 0
    assert not Service.objects.exists()

    # the output folder of a running job is taken
    assert post().status_code == 201
    assert "is writing to this folder now" in _error(post(name="second"), "output")


def test_policies_tenants_and_estimate(
    owner, outsider, make_sub_account, angel_version, dedicated, inputs
):
    source, target, _ = inputs
    jid = owner.api.post(
        "/api/v1/jobs/", _body(angel_version, dedicated, source, target), format="json"
    ).json()["job_id"]
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    assert reader.api.get(f"/api/v1/jobs/{jid}/").status_code == 200
    refused = reader.api.post(f"/api/v1/jobs/{jid}/cancel/")
    assert refused.status_code == 403 and refused.json()["action"] == "ems:CancelJob"
    created = reader.api.post(
        "/api/v1/jobs/",
        _body(angel_version, dedicated, source, target.replace("out/", "o2/")),
        format="json",
    )
    assert created.status_code == 403 and created.json()["action"] == "ems:CreateJob"

    assert outsider.api.get(f"/api/v1/jobs/{jid}/").status_code == 404
    assert outsider.api.post(f"/api/v1/jobs/{jid}/cancel/").status_code == 404
    assert outsider.api.get("/api/v1/jobs/").json()["results"] == []
    stolen = outsider.api.post(
        "/api/v1/jobs/", _body(angel_version, dedicated, source, target), format="json"
    )
    assert stolen.status_code == 400
    assert Job.objects.count() == 1

    estimate = owner.api.post(
        "/api/v1/jobs/estimate/",
        {
            "version": angel_version.pk,
            "resource_group": dedicated.pk,
            "cpu_millicores": 500,
            "memory_mib": 512,
            "workers": 2,
            "items": 1000,
        },
        format="json",
    ).json()
    assert estimate["per_hour"] == "0.000000" and "dedicated group" in estimate["note"]
    assert estimate["rate_per_instance"] is None and estimate["total"] is None


@pytest.mark.django_db
def test_schema_has_the_job_resources(owner):
    paths = owner.api.get("/api/schema/?format=json").json()["paths"]
    for path in (
        "/api/v1/jobs/",
        "/api/v1/jobs/{job_id}/",
        "/api/v1/jobs/{job_id}/cancel/",
        "/api/v1/jobs/{job_id}/events/",
        "/api/v1/jobs/estimate/",
    ):
        assert path in paths, path
