"""Web pages of batch jobs: the list, the form (from a config version's page), the job page with
its live progress, and the cancel button. The same services as ``/api/v1/jobs/``."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts import authz
from accounts.door import page, page_object, require_actor
from models_repo import selectors as repo_selectors
from models_repo import services as repo_services
from models_repo.addresses import AddressError, build_cos_address, parse_address
from models_repo.api import run_upload, upload_too_big
from models_repo.storage import AccessRefused, NotFound, StorageError
from models_repo.uploads import UploadRefused
from serving.jobs import selectors
from serving.jobs import services as job_services
from serving.jobs.forms import SIZE_FIELDS, JobForm
from serving.jobs.models import Job
from serving.services import InstanceSize, InsufficientResources

JOBS_PER_PAGE = 50
EVENTS_SHOWN = 50
# The form fields the estimate is computed from (sent by the form's live region, never a file).
ESTIMATE_FIELDS = ("version", *SIZE_FIELDS, "workers", "source", "address", "bucket", "prefix")
# Lines are counted for the estimate only in inputs up to this size (the page must stay quick).
COUNT_MAX_BYTES = 32 << 20
# The services' field names → the form's.
ALIASES = {"group": "resource_group", "cpu_millicores": "cpu_cores", "input": "address"}


def _add_errors(form, exc: ValidationError) -> None:
    if not hasattr(exc, "error_dict"):
        for message in exc.messages:
            form.add_error(None, message)
        return
    for field, errors in exc.error_dict.items():
        field = ALIASES.get(field, field)
        if field == "address" and form.cleaned_data.get("source") != "address":
            field = "prefix"
        for error in errors:
            for message in error.messages:
                form.add_error(field if field in form.fields else None, message)


def _buckets(actor) -> list:
    try:
        return repo_selectors.buckets(actor=actor)
    except (StorageError, PermissionDenied):
        return []


def _size(data) -> InstanceSize:
    cpu = data.get("cpu_cores")
    return InstanceSize(
        cpu_millicores=int(cpu * 1000) if cpu else 0,
        memory_mib=data.get("memory_mib") or 0,
        gpus=data.get("gpus") or 0,
        quota_type=data.get("quota_type") or "",
        quota_count=data.get("quota_count") or 0,
    )


def _region_of(actor, bucket: str) -> str:
    try:
        return repo_selectors.bucket_info(actor=actor, bucket=bucket).region or ""
    except (AccessRefused, NotFound):
        raise ValidationError({"bucket": f"There is no bucket {bucket} in this account."}) from None


def _input_address(request, actor, data) -> str:
    """The input as a cos:// address; an upload is written into the bucket first."""
    if data["source"] == "address":
        return data["address"].strip()
    bucket, prefix = data["bucket"], data["prefix"]
    if data["source"] == "upload":
        upload = {
            "prefix": prefix,
            "zip": data.get("zip"),
            "files": request.FILES.getlist("files"),
            "paths": request.POST.getlist("paths"),
        }
        result = run_upload(actor, bucket, upload)
        request.ems_upload = result
        return result["address"]
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return build_cos_address(bucket, prefix, region=_region_of(actor, bucket))


def _output_address(data, input_address: str) -> str:
    """The typed output folder, or ``outputs/<job name>/`` in the input's bucket."""
    if data.get("output", "").strip():
        return data["output"].strip()
    try:
        source = parse_address(input_address, folder=False)
    except AddressError as exc:
        raise ValidationError({"address": exc.message}) from None
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in data["name"].strip())
    return build_cos_address(source.bucket, f"outputs/{slug}/", region=source.region or "")


def _estimate(actor, form) -> dict | None:
    """The cost of what the form says: per hour, and items × the measured rate when both are
    known (the input's line count is read only for a typed or picked input)."""
    data = form.cleaned_data
    if not data.get("version") or not data.get("resource_group"):
        return None
    items = None
    if data.get("source") in ("address", "pick") and (data.get("address") or data.get("bucket")):
        try:
            items = count_items(actor, _input_address(None, actor, data), data["version"])
        except (ValidationError, StorageError, AddressError, PermissionDenied):
            items = None
    try:
        return job_services.job_estimate(
            actor=actor,
            version=data["version"],
            group=data["resource_group"],
            size=_size(data),
            workers=data.get("workers") or 1,
            items=items,
        )
    except (ValidationError, InsufficientResources):
        return None


def count_items(actor, address: str, version) -> int | None:
    """The input's lines (JSON Lines) or array items (JSON), or None past COUNT_MAX_BYTES."""
    import json

    source = parse_address(address, folder=False)
    # the counts are read from the files: only for those who may read them
    authz.check(
        actor, "storage:GetObject", repo_services.bucket_resource(actor.tenant, source.bucket)
    )
    storage = repo_services.tenant_storage(actor.tenant)
    region = version.config.region.name
    keys = job_services.list_input(storage, source, region=region)
    sizes = [storage.stat(source.bucket, key).size for key in keys]
    if sum(sizes) > COUNT_MAX_BYTES:
        return None
    items = 0
    for key in keys:
        data = storage.read(source.bucket, key, max_bytes=COUNT_MAX_BYTES)
        if key.endswith(".json"):
            try:
                body = json.loads(data)
            except ValueError:
                return None
            rows = body.get("instances") if isinstance(body, dict) else body
            items += len(rows) if isinstance(rows, list) else 0
        else:
            items += sum(1 for line in data.splitlines() if line.strip())
    return items


@page("GET", actions="ems:DescribeJobs")
def job_list(request):
    actor = require_actor(request)
    jobs = Paginator(selectors.jobs(actor=actor), JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "serving/jobs/job_list.html", {"jobs": jobs})


@page("GET", "POST", actions="ems:CreateJob")
def job_create(request):
    actor = require_actor(request)
    buckets = _buckets(actor)
    initial = {k: request.GET[k] for k in ("version", "name") if request.GET.get(k)}
    if request.method == "GET" and request.GET.get("estimate"):
        # the form's live estimate: the page bound to the fields sent, no errors shown
        form = JobForm(request.GET, actor=actor, buckets=buckets)
        form.is_valid()
        context = {"estimate": _estimate(actor, form), "asked": True}
        return render(request, "serving/jobs/_estimate.html", context)
    form = JobForm(request.POST or None, request.FILES or None, actor=actor, buckets=buckets,
                   initial=initial)  # fmt: skip
    status = 200
    if request.method == "POST":
        status = 400
        too_big = upload_too_big(request)
        if too_big:
            form.add_error(None, too_big)
            status = 413
        elif form.is_valid():
            job, status = _submit(request, actor, form)
            if job is not None:
                messages.success(request, f"Started {job.name} ({job.job_id}).")
                return redirect("jobs:job-detail", job_id=job.job_id)
    context = {
        "form": form,
        "choices_info": form.choices_info(),
        "browse_next": request.path,
        "estimate_fields": ESTIMATE_FIELDS,
    }
    return render(request, "serving/jobs/job_form.html", context, status=status)


def _submit(request, actor, form):
    job, status = _try_create(request, actor, form)
    upload = getattr(request, "ems_upload", None)
    if job is None and upload is not None:  # uploaded for this job, and the job was refused
        reason = "; ".join(str(e) for e in form.non_field_errors()) or "the job was refused"
        repo_services.upload_discard(actor=actor, upload=upload, reason=reason)
        form.add_error(None, "The uploaded files were removed from the bucket again.")
    return job, status


def _try_create(request, actor, form):
    data = form.cleaned_data
    try:
        source = _input_address(request, actor, data)
        job = job_services.job_create(
            actor=actor,
            version=data["version"],
            group=data["resource_group"],
            name=data["name"],
            size=_size(data),
            input_url=source,
            output_url=_output_address(data, source),
            workers=data["workers"],
            batch_size=data["batch_size"],
            signature_name=data.get("signature_name") or "",
            max_failed=data["max_failed"],
        )
        return job, 200
    except InsufficientResources as exc:
        form.add_error(
            "resource_group",
            f"{exc.message}. Pick a smaller size or fewer workers, or another resource group.",
        )
    except job_services.JobIdUnavailable as exc:
        form.add_error(None, exc.message)
    except ValidationError as exc:
        _add_errors(form, exc)
    except UploadRefused as exc:
        form.add_error(None, exc.message)
        return None, exc.status
    except (AccessRefused, NotFound):
        form.add_error("bucket", "There is no such bucket in this account.")
    except StorageError as exc:
        form.add_error(None, str(exc))
    return None, 400


def _job(request, job_id: str) -> Job:
    return page_object(
        request,
        selectors.jobs(actor=require_actor(request), action="ems:DescribeJob"),
        job_id=job_id,
    )


def _browse(bucket: str, prefix: str) -> str:
    return f"{reverse('models_repo:browse')}?{urlencode({'bucket': bucket, 'prefix': prefix})}"


def _download(bucket: str, key: str) -> str:
    return f"{reverse('models_repo:download')}?{urlencode({'bucket': bucket, 'key': key})}"


@page("GET", actions="ems:DescribeJob", object=True)
def job_detail(request, job_id: str):
    job = _job(request, job_id)
    output = parse_address(job.output_url)
    files = [
        {
            "input": f.input_key,
            "output": f.output_key,
            "lines": f.lines,
            "state": f.state,
            "download": _download(output.bucket, f.output_key) if f.state == "assembled" else "",
        }
        for f in selectors.files(job=job)
    ]
    context = {
        "job": job,
        "progress": job.progress(),
        "files": files,
        "events": selectors.events(job=job, limit=EVENTS_SHOWN),
        "output_browse": _browse(output.bucket, output.key),
        "output_resource": f"bucket/{output.bucket}",
        "cancellable": not job.is_ended,
    }
    return render(request, "serving/jobs/job_detail.html", context)


@page("POST", actions="ems:CancelJob", object=True)
def job_cancel(request, job_id: str):
    actor = require_actor(request)
    job = _job(request, job_id)
    try:
        job_services.job_cancel(actor=actor, job=job)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Cancelled {job.name}; what it wrote stays in its output.")
    return redirect("jobs:job-detail", job_id=job.job_id)
