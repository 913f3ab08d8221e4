"""Every operation that changes a batch job: create, cancel, and the runner's transitions.

``job_create`` validates the whole request before writing (the input exists and holds .jsonl /
.json files in the tenant's bucket in the config's region; the output is a folder in a bucket of
the tenant; the size fits the group), then in one transaction writes the job, its input files,
its backing service (kind ``batch``, the job's id as service id, ``workers`` replicas) with its
revision and instances (capacity claimed now, as for a deploy), an audit row and an event, and
queues the reconcile of the backing service and the job's dispatch on commit.
"""

from __future__ import annotations

import posixpath
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import authz
from accounts.audit import record
from models_repo.addresses import AddressError, ModelAddress, check_address, parse_address
from models_repo.storage import AccessRefused, NotFound, StorageError, TransientStorageError
from serving import events, scheduling
from serving import services as serving_services
from serving.jobs.models import Job, JobEvent, JobFile, new_job_id
from serving.models import Instance, ResourceGroup, Service
from serving.services import InstanceSize, InsufficientResources

__all__ = [
    "INPUT_SUFFIXES",
    "InstanceSize",
    "InsufficientResources",
    "JobIdUnavailable",
    "job_cancel",
    "job_create",
    "job_estimate",
]

INPUT_SUFFIXES = (".jsonl", ".json")
OUTPUT_SUFFIX = ".out"
PARTS_FOLDER = ".parts/"
MAX_INPUT_FILES = 1000
MAX_WORKERS = 32
MAX_BATCH_SIZE = 4096
JOB_ID_ATTEMPTS = 5
ERROR_SAMPLE = 20


class JobIdUnavailable(Exception):
    """Every random job id tried was taken: nothing was created; trying again is safe."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def emit(job: Job, kind: str, message: str, *, level: str = JobEvent.INFO) -> JobEvent:
    return JobEvent.objects.create(job=job, kind=kind, level=level, message=message[:8000])


def _resource(actor, region: str) -> str:
    return authz.resource_name(actor.tenant, "job", "*", region=region)


def _storage(tenant):
    from models_repo.services import tenant_storage

    return tenant_storage(tenant)


def _address(text: str, *, field: str, folder: bool, tenant, region: str) -> ModelAddress:
    try:
        address = parse_address(text, folder=folder)
        check_address(address, app_id=tenant.app_id, region=region)
    except AddressError as exc:
        raise ValidationError({field: exc.message}) from None
    return address


def _storage_error(field: str, address: ModelAddress, exc: Exception) -> ValidationError:
    if isinstance(exc, (AccessRefused, NotFound)):
        return ValidationError({field: f"There is no bucket {address.bucket} in this account."})
    return ValidationError({field: str(exc)})


def list_input(storage, address: ModelAddress, *, region: str) -> list[str]:
    """The input's object keys: the file itself, or the .jsonl / .json files under the folder
    (sorted; the folder's ``.parts/`` of an earlier job's output left out)."""
    field = "input"
    try:
        if address.region is None:
            bucket_region = storage.bucket_info(address.bucket).region
            if bucket_region and bucket_region != region:
                raise ValidationError(
                    {field: f"The bucket is in {bucket_region} but the config is in {region}."}
                )
        if not address.key.endswith("/"):
            if not storage.is_file(address.bucket, address.key):
                if any(True for _ in storage.walk(address.bucket, address.key + "/")):
                    raise ValidationError(
                        {field: f"{address.key} is a folder: end its address with '/'."}
                    )
                raise ValidationError(
                    {field: f"There is no file {address.key} in {address.bucket}."}
                )
            if not address.key.endswith(INPUT_SUFFIXES):
                raise ValidationError(
                    {field: f"{address.key} is neither a .jsonl nor a .json file of instances."}
                )
            return [address.key]
        keys = sorted(
            info.key
            for info in storage.walk(address.bucket, address.key)
            if info.key.endswith(INPUT_SUFFIXES) and f"/{PARTS_FOLDER}" not in f"/{info.key}"
        )
    except TransientStorageError:
        raise
    except StorageError as exc:
        raise _storage_error(field, address, exc) from None
    if not keys:
        raise ValidationError(
            {
                field: f"The folder {address.key} in {address.bucket} holds no .jsonl or .json "
                "file of instances (or does not exist)."
            }
        )
    if len(keys) > MAX_INPUT_FILES:
        raise ValidationError(
            {field: f"The input holds {len(keys)} files; a job takes at most {MAX_INPUT_FILES}."}
        )
    return keys


def output_key(input_address: ModelAddress, output: ModelAddress, key: str) -> str:
    """``<output>/<path of the input file below the input folder>.out``."""
    base = (
        input_address.key
        if input_address.key.endswith("/")
        else posixpath.dirname(input_address.key)
    )
    relative = key[len(base) :].lstrip("/") if base and key.startswith(base) else key
    if not base:
        relative = key
    return output.key + relative + OUTPUT_SUFFIX


def _check_output(storage, output: ModelAddress, *, region: str, tenant) -> None:
    try:
        info = storage.bucket_info(output.bucket)
    except TransientStorageError:
        raise
    except StorageError as exc:
        raise _storage_error("output", output, exc) from None
    if info.region and info.region != region:
        raise ValidationError(
            {"output": f"The bucket {output.bucket} is in {info.region}, the config in {region}."}
        )
    if storage.is_file(output.bucket, output.key.rstrip("/")):
        raise ValidationError({"output": f"{output.key.rstrip('/')} is a file, not a folder."})
    busy = (
        Job.objects.filter(tenant=tenant, output_url=str(output))
        .exclude(status__in=Job.ENDED)
        .values_list("job_id", flat=True)
        .first()
    )
    if busy:
        raise ValidationError(
            {"output": f"The job {busy} is writing to this folder now: pick another folder."}
        )


def _check_numbers(*, name: str, workers: int, batch_size: int, max_failed: int) -> str:
    errors = {}
    name = (name or "").strip()
    if not name or len(name) > 40:
        errors["name"] = "The job name is 1 to 40 characters."
    if not 1 <= int(workers) <= MAX_WORKERS:
        errors["workers"] = f"The worker (instance) count is 1 to {MAX_WORKERS}."
    if not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
        errors["batch_size"] = f"The batch size is 1 to {MAX_BATCH_SIZE} instances."
    if int(max_failed) < 0:
        errors["max_failed"] = "The failed-line threshold is 0 or more."
    if errors:
        raise ValidationError(errors)
    return name


def _check_group(actor, group: ResourceGroup, config) -> None:
    if (
        not ResourceGroup.objects.for_actor(actor, "ems:DescribeResourceGroups")
        .filter(pk=group.pk, is_active=True)
        .exists()
    ):
        raise ValidationError({"resource_group": "No such resource group."})
    if group.region_id != config.region_id:
        raise ValidationError(
            {
                "resource_group": (
                    f"The resource group {group.name} is in {group.region.name}; the config "
                    f"{config.name} is in {config.region.name}. Pick a group in its region."
                )
            }
        )


def job_create(
    *,
    actor,
    version,
    group: ResourceGroup,
    name: str,
    size: InstanceSize,
    input_url: str,
    output_url: str,
    workers: int = 1,
    batch_size: int = 64,
    signature_name: str = "",
    max_failed: int = 0,
) -> Job:
    """Start a batch job of ``version`` over ``input_url`` writing to ``output_url``."""
    config = version.config
    region = config.region.name
    authz.check(actor, "ems:CreateJob", _resource(actor, region))
    name = _check_numbers(name=name, workers=workers, batch_size=batch_size, max_failed=max_failed)
    _check_group(actor, group, config)
    fields, triple = serving_services._size(group, size, version.runtime)
    scheduling.check_fits_group(group, triple)
    serving_services._check_version(actor, version)
    source = _address(input_url, field="input", folder=False, tenant=actor.tenant, region=region)
    target = _address(output_url, field="output", folder=True, tenant=actor.tenant, region=region)
    storage = _storage(actor.tenant)
    keys = list_input(storage, source, region=region)
    _check_output(storage, target, region=region, tenant=actor.tenant)
    outputs = [output_key(source, target, key) for key in keys]
    if set(outputs) & set(keys):
        raise ValidationError({"output": "The output would overwrite input files."})
    with transaction.atomic():
        for _ in range(JOB_ID_ATTEMPTS):
            job_id = new_job_id()
            try:
                with transaction.atomic():
                    service = Service.objects.create(
                        service_id=job_id,
                        kind=Service.BATCH,
                        tenant=actor.tenant,
                        name=name,
                        region=config.region,
                        group=group,
                        config=config,
                        replicas=int(workers),
                        created_by=actor,
                    )
                    job = Job.objects.create(
                        job_id=job_id,
                        tenant=actor.tenant,
                        name=name,
                        region=config.region,
                        group=group,
                        config=config,
                        version=version,
                        service=service,
                        workers=int(workers),
                        input_url=str(source),
                        output_url=str(target),
                        batch_size=int(batch_size),
                        signature_name=(signature_name or "").strip(),
                        max_failed=int(max_failed),
                        created_by=actor,
                    )
                break
            except IntegrityError:
                continue
        else:
            raise JobIdUnavailable(
                f"No free job id was found in {JOB_ID_ATTEMPTS} attempts; nothing was started. "
                "Try again."
            )
        serving_services._billing_check(
            actor=actor, group=group, quota_count=fields["quota_count"], instances=int(workers)
        )
        revision = serving_services._new_revision(
            service, version=version, fields=fields, reason="deploy", actor=actor
        )
        serving_services._set(service, revision=revision)
        instances = serving_services._add_instances(service, revision, int(workers))
        JobFile.objects.bulk_create(
            JobFile(
                job=job,
                index=index,
                input_key=key,
                output_key=out,
                format=JobFile.JSON if key.endswith(".json") else JobFile.JSONL,
            )
            for index, (key, out) in enumerate(zip(keys, outputs, strict=True))
        )
        message = (
            f"job of {version} over {len(keys)} input file(s) with {len(instances)} worker(s) "
            f"of {scheduling.fmt_size(triple)} on {group.name}"
        )
        events.emit(service, events.SCHEDULED, message)
        emit(job, "created", message)
        record(
            actor=actor,
            action="ems:CreateJob",
            resource=job.resource_name,
            detail={"version": str(version), "group": group.name, "workers": int(workers)},
        )
        _enqueue(job)
    return job


def _enqueue(job: Job) -> None:
    from serving.jobs.tasks import job_dispatch
    from serving.tasks import reconcile_service

    job_pk, service_pk = job.pk, job.service_id
    transaction.on_commit(lambda: reconcile_service.delay(service_pk))
    transaction.on_commit(lambda: job_dispatch.delay(job_pk))


def release_instances(job: Job, reason: str) -> None:
    """Stop the job's instances: its backing service is deleted (the reconciler stops them; the
    meter charges up to their stop). Idempotent."""
    from serving.tasks import reconcile_service

    service_pk = job.service_id
    if service_pk is None:
        return
    now = timezone.now()
    if Service.objects.filter(pk=service_pk, deleted_at__isnull=True).update(
        desired=Service.DELETE, deleted_at=now, status=Service.STOPPING, updated_at=now
    ):
        Instance.objects.filter(service_id=service_pk, state__in=Instance.ACTIVE).update(
            state=Instance.STOPPING
        )
        events.emit(Service(pk=service_pk), events.STOPPED, f"job {reason}: instances stop")
    transaction.on_commit(lambda: reconcile_service.delay(service_pk))


def job_cancel(*, actor, job: Job) -> Job:
    """Cancel a waiting or running job: its instances stop, its pending parts are cancelled;
    parts already written stay, files whose every part was done are assembled (the runner)."""
    authz.check(actor, "ems:CancelJob", job)
    from serving.jobs import runner

    with transaction.atomic():
        now = timezone.now()
        if not Job.objects.filter(pk=job.pk, status__in=(Job.WAITING, Job.RUNNING)).update(
            status=Job.CANCELLED, ended_at=now, updated_at=now, message="cancelled"
        ):
            raise ValidationError("The job has already ended.")
        job.refresh_from_db()
        cancelled = runner.cancel_parts(job)
        release_instances(job, "cancelled")
        emit(job, "cancelled", f"cancelled; {cancelled} part(s) not started were dropped")
        record(actor=actor, action="ems:CancelJob", resource=job.resource_name)
    from serving.jobs.tasks import job_dispatch

    job_pk = job.pk
    transaction.on_commit(lambda: job_dispatch.delay(job_pk))
    return job


def job_end(job: Job, *, status: str, message: str, level: str = JobEvent.INFO) -> bool:
    """End a waiting or running job as the platform (the runner, a billing stop, a failed
    service): pending parts are cancelled, the instances stop. False when it had ended."""
    from serving.jobs import runner

    with transaction.atomic():
        now = timezone.now()
        if not Job.objects.filter(pk=job.pk, status__in=(Job.WAITING, Job.RUNNING)).update(
            status=status, ended_at=now, updated_at=now, message=message[:4000]
        ):
            return False
        job.refresh_from_db()
        runner.cancel_parts(job)
        release_instances(job, status.lower())
        emit(job, status.lower(), message, level=level)
        if status != Job.SUCCEEDED:  # the platform stopped it: audited with the reason
            record(
                actor=None,
                tenant=job.tenant,
                action="ems:CancelJob",
                resource=job.resource_name,
                detail={"by": "platform", "status": status, "reason": message[:500]},
            )
    return True


def job_stop_by_system(*, service: Service, reason: str) -> bool:
    """billing / tenancy: a budget stop, an expired purchase or a suspension stops a job's
    instances: the job fails with the reason (what it wrote stays)."""
    job = Job.objects.filter(service=service).first()
    if job is None:
        return False
    return job_end(job, status=Job.FAILED, message=f"stopped: {reason}", level=JobEvent.ERROR)


def measured_rate(version, size_fields: dict) -> float | None:
    """Lines per second per instance of earlier successful jobs of the same config with the
    same instance size, or None."""
    rows = Job.objects.filter(
        config_id=version.config_id,
        status=Job.SUCCEEDED,
        started_at__isnull=False,
        ended_at__isnull=False,
        done__gt=0,
        service__revision__cpu_millicores=size_fields["cpu_millicores"],
        service__revision__gpus=size_fields["gpus"],
    ).order_by("-ended_at")[:5]
    rates = []
    for job in rows:
        seconds = (job.ended_at - job.started_at).total_seconds()
        if seconds > 0:
            rates.append(job.done / seconds / max(job.workers, 1))
    return sum(rates) / len(rates) if rates else None


def job_estimate(
    *,
    actor,
    version,
    group: ResourceGroup,
    size: InstanceSize,
    workers: int = 1,
    items: int | None = None,
) -> dict:
    """What a job would cost: per hour always; with ``items`` and a measured rate (earlier jobs
    of the config at this size), the expected seconds and total too."""
    from billing.limits import estimate

    fields, _ = serving_services._size(group, size, version.runtime)
    body = estimate(
        group=group,
        quota_type=fields["quota_type"],
        quota_count=max(fields["quota_count"], 1),
        replicas=int(workers),
    )
    rate = measured_rate(version, fields)
    body.update(items=items, rate_per_instance=rate, seconds=None, total=None)
    if items is not None and rate:
        seconds = items / (rate * int(workers))
        body["seconds"] = round(seconds, 1)
        body["total"] = (Decimal(body["per_hour"]) * Decimal(seconds) / Decimal(3600)).quantize(
            Decimal("0.01")
        )
    return body
