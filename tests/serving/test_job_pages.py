"""The batch-job pages: the form from a config version's page (input typed, picked or uploaded;
the estimate), the job list, the job page (progress, cancel, output links), permissions and
another tenant's 404. The run itself is tested with the runner (tests of serving.jobs)."""

from __future__ import annotations

import io
import re

import pytest

from serving.jobs.models import Job
from tests.models_repo.conftest import tenant_store

LINES = b"".join(b'{"x": %d}\n' % n for n in range(12))


@pytest.fixture
def job_input(owner, angel_version):
    """A JSON Lines file and a folder of two in the bucket of the version's model."""
    bucket = angel_version.bucket
    store = tenant_store(owner.tenant)
    store.write(bucket, "in/one.jsonl", io.BytesIO(LINES))
    store.write(bucket, "many/a.jsonl", io.BytesIO(LINES))
    store.write(bucket, "many/b.jsonl", io.BytesIO(LINES[:18]))
    return bucket


def errors(answer) -> list[str]:
    return re.findall(r'class="errorlist"[^>]*>(.*?)</ul>', answer.content.decode(), re.S)


def _address(bucket: str, key: str) -> str:
    return f"cos://{bucket}.cos.ap-beijing.myqcloud.com/{key}"


def _form(version, group, **extra):
    return {
        "name": "lr-batch",
        "version": version.pk,
        "resource_group": group.pk,
        "cpu_cores": "0.5",
        "memory_mib": 512,
        "gpus": 0,
        "workers": 1,
        "source": "address",
        "batch_size": 64,
        "max_failed": 0,
        **extra,
    }


def test_config_page_links_to_the_job_form_which_has_the_apis_fields(owner, angel_version):
    detail = owner.client.get(f"/models/{angel_version.config_id}/").content.decode()
    link = re.search(r'<a class="start-job" href="([^"]+)"', detail).group(1)
    assert link == f"/jobs/new/?version={angel_version.pk}&amp;name=angel-lr-job"
    assert 'class="start-service"' in detail
    page = owner.client.get(link.replace("&amp;", "&"))
    assert page.status_code == 200
    html = page.content.decode()
    for name in (
        "name", "version", "resource_group", "quota_type", "quota_count", "cpu_cores",
        "memory_mib", "gpus", "workers", "source", "address", "bucket", "prefix", "files",
        "zip", "output", "batch_size", "signature_name", "max_failed",
    ):  # fmt: skip
        assert f'name="{name}"' in html, name
    assert re.search(rf'<option value="{angel_version.pk}" selected>', html)
    assert 'value="angel-lr-job"' in html
    assert (
        "Batch jobs arrive with their own page"
        not in owner.client.get("/services/new/").content.decode()
    )
    nav = re.findall(r'<li><a href="([^"]+)"', html)
    assert "/jobs/" in nav


def test_start_from_a_typed_file_then_the_job_page_and_cancel(
    owner, job_input, angel_version, dedicated
):
    body = _form(angel_version, dedicated, address=_address(job_input, "in/one.jsonl"))
    answer = owner.client.post("/jobs/new/", body)
    assert answer.status_code == 302, errors(answer)
    job = Job.objects.get(name="lr-batch")
    assert answer["Location"] == f"/jobs/{job.job_id}/"
    assert job.input_url == _address(job_input, "in/one.jsonl")
    assert job.output_url == _address(job_input, "outputs/lr-batch/")  # the default folder
    assert (job.workers, job.batch_size, job.service.revision.cpu_millicores) == (1, 64, 500)
    page = owner.client.get(f"/jobs/{job.job_id}/").content.decode()
    assert 'id="live-job" hx-get=' in page and 'hx-select="#live-job"' in page  # live region
    assert '<progress id="job-progress"' in page
    assert 'data-status="Waiting"' in page
    assert "in/one.jsonl" in page and "outputs/lr-batch/one" in page
    browse = re.search(r'<a class="browse-output" href="([^"]+)"', page).group(1)
    assert browse == f"/models/browse/?bucket={job_input}&amp;prefix=outputs%2Flr-batch%2F"
    assert 'data-confirm="Cancel lr-batch?' in page
    listing = owner.client.get("/jobs/").content.decode()
    assert job.job_id in listing and 'id="live-jobs"' in listing
    assert owner.client.post(f"/jobs/{job.job_id}/cancel/").status_code == 302
    job.refresh_from_db()
    assert job.status == Job.CANCELLED
    ended = owner.client.get(f"/jobs/{job.job_id}/").content.decode()
    assert 'hx-trigger="every 2s"' not in ended  # an ended job's page stops polling
    assert 'name="cancel"' not in ended


def test_input_picked_or_uploaded_and_a_typed_output(owner, job_input, angel_version, dedicated):
    picked = _form(
        angel_version,
        dedicated,
        name="picked",
        source="pick",
        bucket=job_input,
        prefix="many/",
        output=_address(job_input, "results/picked/"),
    )
    assert owner.client.post("/jobs/new/", picked).status_code == 302
    job = Job.objects.get(name="picked")
    assert job.input_url == _address(job_input, "many/")
    assert [f.input_key for f in job.files.order_by("index")] == ["many/a.jsonl", "many/b.jsonl"]
    uploaded = _form(
        angel_version, dedicated, name="uploaded", source="upload", bucket=job_input, prefix="up/"
    )
    uploaded["files"] = [io.BytesIO(LINES)]
    uploaded["files"][0].name = "lines.jsonl"
    uploaded["paths"] = ["lines.jsonl"]
    answer = owner.client.post("/jobs/new/", uploaded)
    assert answer.status_code == 302, errors(answer)
    job = Job.objects.get(name="uploaded")
    assert job.input_url == _address(job_input, "up/")
    assert tenant_store(owner.tenant).read(job_input, "up/lines.jsonl") == LINES


def test_refusals_say_what_to_fix_and_a_refused_upload_is_removed(
    owner, job_input, angel_version, dedicated
):
    missing = owner.client.post(
        "/jobs/new/", _form(angel_version, dedicated, address=_address(job_input, "in/no.jsonl"))
    )
    assert missing.status_code == 400
    assert "There is no file in/no.jsonl" in missing.content.decode()
    empty = owner.client.post("/jobs/new/", _form(angel_version, dedicated, address=""))
    assert empty.status_code == 400 and "Type the input" in empty.content.decode()
    not_lines = _form(
        angel_version, dedicated, name="bad", source="upload", bucket=job_input, prefix="bad/"
    )
    not_lines["files"] = [io.BytesIO(b"hello")]
    not_lines["files"][0].name = "notes.txt"
    not_lines["paths"] = ["notes.txt"]
    refused = owner.client.post("/jobs/new/", not_lines)
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "no .jsonl or .json file" in html and "removed from the bucket again" in html
    assert not tenant_store(owner.tenant).is_file(job_input, "bad/notes.txt")
    assert not Job.objects.exists()


def test_the_estimate_is_per_hour_and_counts_the_items(owner, job_input, angel_version, dedicated):
    query = {
        "estimate": 1,
        "version": angel_version.pk,
        "resource_group": dedicated.pk,
        "cpu_cores": "0.5",
        "memory_mib": 512,
        "workers": 2,
        "source": "address",
        "address": _address(job_input, "many/"),
    }
    answer = owner.client.get("/jobs/new/", query).content.decode()
    assert answer.startswith('<output id="estimate"')
    assert "14 items" in answer  # 12 + 2 lines; no earlier job measured a rate
    assert "per hour" in answer and "dedicated group" in answer


def test_permissions_and_another_tenants_job(
    owner, outsider, make_sub_account, job_input, angel_version, dedicated
):
    body = _form(angel_version, dedicated, address=_address(job_input, "in/one.jsonl"))
    assert owner.client.post("/jobs/new/", body).status_code == 302
    job = Job.objects.get()
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    page = reader.client.get(f"/jobs/{job.job_id}/").content.decode()
    assert job.job_id in page and 'name="cancel"' not in page
    assert 'class="browse-output"' in page  # storage:List* is in the read-only preset
    refused = reader.client.post(f"/jobs/{job.job_id}/cancel/")
    assert refused.status_code == 403 and b"ems:CancelJob" in refused.content
    assert reader.client.get("/jobs/new/").status_code == 403
    assert (
        'class="start-job"'
        not in reader.client.get(f"/models/{angel_version.config_id}/").content.decode()
    )
    for url in (f"/jobs/{job.job_id}/", f"/jobs/{job.job_id}/cancel/"):
        assert outsider.client.get(url).status_code in (404, 405)
    assert outsider.client.post(f"/jobs/{job.job_id}/cancel/").status_code == 404
    assert job.job_id not in outsider.client.get("/jobs/").content.decode()
    job.refresh_from_db()
    assert job.status == Job.WAITING
