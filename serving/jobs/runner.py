"""The execution of batch jobs (docs/batch-jobs.md).

* ``dispatch(job)`` — plan once (count each input file's lines, write the parts), hand pending
  parts to the broker, put parts whose lease expired back to pending, assemble files whose
  parts are all done, end the job when every file is written. Run on create, by each part that
  finishes, and by beat's ``sweep`` for every job not ended.
* ``run_part(part)`` — claim the part with ``UPDATE … WHERE status='pending'`` (a lease),
  predict its lines in batches spread over the job's running instances, write the part's
  output object (rewritten whole on a retry), then ``UPDATE … WHERE status='running' AND
  lease_owner=me`` to done and add its counts to the job in the same transaction: a part
  counts once, whichever worker ran it and however often.
* assembly — the parts of one file concatenated, in order, into its output object in one
  streamed write (object stores have no append), claimed with a lease as well; then the part
  objects are removed.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from models_repo.addresses import parse_address
from models_repo.storage import StorageError, TransientStorageError
from serving import faults
from serving.jobs import io
from serving.jobs.models import Job, JobEvent, JobFile, JobPart
from serving.models import Instance, Service

log = logging.getLogger(__name__)

WAITING, QUEUED, ENDED = "waiting", "queued", "ended"
DONE, SKIPPED, LOST, RELEASED, CANCELLED = "done", "skipped", "lost", "released", "cancelled"
ERROR_SAMPLE = 20
_pool: io.BatchPool | None = None
_pool_lock = threading.Lock()


def _lease() -> timedelta:
    return timedelta(seconds=settings.EMS_JOB_LEASE_SECONDS)


def _owner() -> str:
    return f"{socket.gethostname()[:16]}-{os.getpid()}-{secrets.token_hex(4)}"


def _pool_get() -> io.BatchPool:
    """One pool per worker process: its threads keep their connections to the instances."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = io.BatchPool(settings.EMS_JOB_INFLIGHT)
        return _pool


def _storage(job: Job):
    from models_repo.services import tenant_storage

    return tenant_storage(job.tenant)


def _output(job: Job):
    return parse_address(job.output_url)


def _input_bucket(job: Job) -> str:
    return parse_address(job.input_url, folder=False).bucket


def part_key(job: Job, part: JobPart) -> str:
    return f"{_output(job).key}.parts/{job.job_id}/{part.file.index:05d}/{part.index:06d}.jsonl"


def _emit(job: Job, kind: str, message: str, level: str = JobEvent.INFO) -> None:
    from serving.jobs.services import emit

    emit(job, kind, message, level=level)


def _end(job: Job, status: str, message: str, level: str = JobEvent.INFO) -> bool:
    from serving.jobs.services import job_end

    return job_end(job, status=status, message=message, level=level)


def cancel_parts(job: Job) -> int:
    return JobPart.objects.filter(job=job, status=JobPart.PENDING).update(
        status=JobPart.CANCELLED, finished_at=timezone.now()
    )


def addresses(job: Job) -> list[str]:
    return list(
        Instance.objects.filter(
            service_id=job.service_id, state=Instance.RUNNING, unhealthy_reason=""
        )
        .exclude(address="")
        .order_by("created_at", "pk")
        .values_list("address", flat=True)
    )


# --- planning -----------------------------------------------------------------------------------
def part_lines(batch_size: int, lines: int, size: int) -> int:
    """Lines per part of a file of ``lines`` lines and ``size`` bytes: whole batches, at most
    ``EMS_JOB_PART_BATCHES`` of them and about ``EMS_JOB_PART_BYTES`` of input (a worker holds
    a part's lines and answers in memory), at least one batch. A part's bookkeeping (claim,
    rows, part object) costs the same whatever its size, so small lines make long parts."""
    batches = settings.EMS_JOB_PART_BATCHES
    if lines and size:
        batches = min(batches, settings.EMS_JOB_PART_BYTES * lines // (size * batch_size))
    return batch_size * max(1, batches)


def plan(job: Job) -> bool:
    """Count each input file's lines and write its parts (once). False when the job failed."""
    if JobPart.objects.filter(job=job).exists() or job.total:
        return True
    storage, bucket = _storage(job), _input_bucket(job)
    size = job.batch_size
    counts, per_part, offsets = {}, {}, {}
    try:
        for file in job.files.all():
            with storage.open(bucket, file.input_key) as stream:
                if file.format == JobFile.JSON:
                    data = stream.read()
                    lines = counts[file.pk] = len(io.json_items(data, file.input_key))
                    per_part[file.pk] = part_lines(size, lines, len(data))
                else:  # where every batch starts; a part starts every per_part // size
                    lines, starts, total = io.scan_lines(stream, size)
                    counts[file.pk], per_part[file.pk] = lines, part_lines(size, lines, total)
                    offsets[file.pk] = [*starts[:: per_part[file.pk] // size], total]
    except io.BadInputFile as exc:
        _end(job, Job.FAILED, f"input: {exc}", level=JobEvent.ERROR)
        return False
    except TransientStorageError:
        raise
    except StorageError as exc:
        _end(job, Job.FAILED, f"reading the input failed: {exc}", level=JobEvent.ERROR)
        return False
    with transaction.atomic():
        if JobPart.objects.filter(job=job).exists():  # another dispatch planned meanwhile
            return True
        parts = []
        for file in job.files.all():
            lines, step = counts[file.pk], per_part[file.pk]
            JobFile.objects.filter(pk=file.pk).update(lines=lines)
            bytes_at = offsets.get(file.pk)
            for index, start in enumerate(range(0, lines, step)):
                parts.append(
                    JobPart(
                        job=job,
                        file=file,
                        index=index,
                        start=start,
                        end=min(start + step, lines),
                        byte_start=bytes_at[index] if bytes_at else None,
                        byte_end=bytes_at[index + 1] if bytes_at else None,
                    )
                )
        JobPart.objects.bulk_create(parts)
        total = sum(counts.values())
        Job.objects.filter(pk=job.pk).update(total=total, updated_at=timezone.now())
        _emit(job, "planned", f"{total} line(s) in {len(counts)} file(s), {len(parts)} part(s)")
    return True


# --- dispatch -----------------------------------------------------------------------------------
def requeue_expired(job: Job) -> int:
    """Parts whose lease ran out (their worker died or hung) go back to pending (a part lost
    too often fails its job when it is claimed again: ``run_part``)."""
    now = timezone.now()
    expired = JobPart.objects.filter(job=job, status=JobPart.RUNNING, lease_until__lt=now)
    count = expired.update(status=JobPart.PENDING, lease_owner="", lease_until=None, queued_at=None)
    if count:
        _emit(job, "requeued", f"{count} part(s) whose worker stopped answering were re-queued")
    return count


def _lost_too_often(part: JobPart) -> str:
    return (
        f"lines {part.start + 1}–{part.end} of {part.file.input_key} were started "
        f"{part.attempts - 1} times and never finished (the worker died or the part ran past the "
        f"task time limit of {settings.CELERY_TASK_TIME_LIMIT} s each time): check the model "
        "with a few of these lines, or use a smaller batch size or EMS_JOB_PART_BATCHES"
    )


def queue_pending(job: Job) -> int:
    """Send pending parts not sent within a lease period to the broker (a message lost with a
    killed worker is sent again; a duplicate is harmless: the claim is conditional)."""
    from serving.jobs.tasks import job_run_part

    now = timezone.now()
    stale = now - _lease()
    sent = 0
    candidates = JobPart.objects.filter(job=job, status=JobPart.PENDING).filter(
        Q(queued_at__isnull=True) | Q(queued_at__lt=stale)
    )
    for pk in list(candidates.order_by("file__index", "index").values_list("pk", flat=True)):
        took = JobPart.objects.filter(pk=pk, status=JobPart.PENDING).filter(
            Q(queued_at__isnull=True) | Q(queued_at__lt=stale)
        )
        if took.update(queued_at=now):
            job_run_part.delay(pk)
            sent += 1
    return sent


def dispatch(job_pk: int) -> str:
    job = Job.objects.select_related("tenant", "service").filter(pk=job_pk).first()
    if job is None:
        return ENDED
    if job.is_ended:
        finish_files(job)
        return ENDED
    service = job.service
    if service is not None and service.status == Service.FAILED:
        _end(
            job,
            Job.FAILED,
            f"the job's instances could not run: {service.message or 'failed'}",
            level=JobEvent.ERROR,
        )
        finish_files(job)
        return ENDED
    if not plan(job):
        finish_files(job)
        return ENDED
    requeue_expired(job)
    assemble_ready(job)
    if maybe_finish(job):
        return ENDED
    if not addresses(job):
        return WAITING
    queue_pending(job)
    return QUEUED


def sweep() -> dict:
    """Beat: dispatch every job that is not ended, and every ended one with files to settle."""
    result = {}
    active = Job.objects.filter(status__in=(Job.WAITING, Job.RUNNING)).values_list("pk", flat=True)
    settle = (
        JobFile.objects.filter(state__in=(JobFile.PENDING, JobFile.ASSEMBLING))
        .filter(job__status__in=Job.ENDED)
        .values_list("job_id", flat=True)
    )
    for pk in sorted(set(active) | set(settle)):
        try:
            result[pk] = dispatch(pk)
        except Exception:
            log.exception("dispatching job %s failed", pk)
            result[pk] = "error"
    return result


# --- one part -----------------------------------------------------------------------------------
def _renew(part_pk: int, owner: str) -> bool:
    return bool(
        JobPart.objects.filter(pk=part_pk, status=JobPart.RUNNING, lease_owner=owner).update(
            lease_until=timezone.now() + _lease()
        )
    )


def _release(part_pk: int, owner: str, status: str = JobPart.PENDING, *, count=False) -> None:
    """Give the part back. A transient failure (no instance answered, storage unavailable)
    does not count as an attempt (``count=False``): only runs that were lost count against
    ``EMS_JOB_PART_ATTEMPTS``."""
    JobPart.objects.filter(pk=part_pk, status=JobPart.RUNNING, lease_owner=owner).update(
        status=status,
        lease_owner="",
        lease_until=None,
        queued_at=None,
        **({} if count else {"attempts": F("attempts") - 1}),
    )


def claim(part_pk: int, owner: str) -> bool:
    now = timezone.now()
    return bool(
        JobPart.objects.filter(
            pk=part_pk, status=JobPart.PENDING, job__status__in=(Job.WAITING, Job.RUNNING)
        ).update(
            status=JobPart.RUNNING,
            lease_owner=owner,
            lease_until=now + _lease(),
            attempts=F("attempts") + 1,
        )
    )


def run_part(part_pk: int) -> str:
    owner = _owner()
    if not claim(part_pk, owner):
        return SKIPPED
    part = JobPart.objects.select_related("file", "job__tenant").get(pk=part_pk)
    job = part.job
    if part.attempts > settings.EMS_JOB_PART_ATTEMPTS:
        # lost that often, it would only be lost again (a line that kills the runtime, a part
        # too slow for the task time limit): the job fails, saying which lines and what to do
        _release(part_pk, owner, JobPart.CANCELLED, count=True)
        if _end(job, Job.FAILED, _lost_too_often(part), level=JobEvent.ERROR):
            finish_files(job)
        return CANCELLED
    now = timezone.now()
    if job.status == Job.WAITING and (  # read with the part: no write for every later part
        Job.objects.filter(pk=job.pk, status=Job.WAITING).update(
            status=Job.RUNNING, started_at=now, updated_at=now
        )
    ):
        _emit(job, "started", "the first part started")
    storage = _storage(job)
    try:
        lines = _predict_part(job, part, owner, storage)
    except SoftTimeLimitExceeded:
        # counted: a part that runs past the limit every time fails the job (requeue_expired)
        _release(part_pk, owner, count=True)
        _emit(
            job,
            "timeout",
            f"lines {part.start + 1}–{part.end} of {part.file.input_key} ran past the task "
            f"time limit ({settings.CELERY_TASK_SOFT_TIME_LIMIT} s) and will be tried again",
            level=JobEvent.WARNING,
        )
        return RELEASED
    except (io.Unavailable, TransientStorageError) as exc:
        ended = Job.objects.filter(pk=job.pk, status__in=Job.ENDED).exists()
        # counted when an instance took a batch and failed it (see io.Unavailable)
        counted = getattr(exc, "reached", False)
        _release(part_pk, owner, JobPart.CANCELLED if ended else JobPart.PENDING, count=counted)
        log.warning("part %s of job %s released: %s", part_pk, job.job_id, exc)
        return CANCELLED if ended else RELEASED
    if lines is None:
        return (
            LOST
            if not Job.objects.filter(pk=job.pk, status__in=Job.ENDED).exists()
            else (CANCELLED)
        )
    body, errors = lines
    storage.write(_output(job).bucket, part_key(job, part), _Bytes(body))
    faults.point("job_part_written")  # tests: a worker killed after writing, before counting
    if not complete(part, owner, errors):
        return LOST
    if errors:  # only a part that added failed lines can be the one past the threshold
        job.refresh_from_db()
        if job.failed > job.max_failed:
            _end(
                job,
                Job.FAILED,
                f"{job.failed} line(s) failed, more than the job's threshold of {job.max_failed}",
                level=JobEvent.ERROR,
            )
            finish_files(job)
            return DONE
    # the job can only end when this file was just written: otherwise whoever assembles the
    # file last (or the sweep) ends it
    if assemble(job, part.file, storage):
        maybe_finish(job)
    return DONE


def _predict_part(job: Job, part: JobPart, owner: str, storage):
    """The part's output bytes and its error sample, or None when the lease was lost or the
    job ended meanwhile. The part's lines are read with one ranged read (its byte range was
    found while planning); each batch is checked and handed to the worker's pool as soon as it
    is ready, so the first batches are in flight while the rest are checked. The lease is
    renewed as batches come back (at most every quarter of its length: a row write per batch
    would cost more than the batch on a fast model)."""
    byte_range = None
    if part.byte_start is not None and part.byte_end is not None:
        byte_range = (part.byte_start, part.byte_end)
    raw = io.read_lines(
        storage,
        _input_bucket(job),
        part.file.input_key,
        part.file.format,
        part.start,
        part.end,
        byte_range,
    )
    predictor = io.Predictor(addresses(job), signature_name=job.signature_name, offset=part.index)
    pool, size = _pool_get(), job.batch_size
    rank = pool.rank()
    futures, bad = [], {}
    try:
        for k in range(0, len(raw), size):
            texts, errors = io.check_lines(raw[k : k + size], part.start + k + 1)
            bad.update((k + i, e) for i, e in errors.items())
            if texts:
                futures.append((k, errors, pool.submit(rank, predictor.predict, texts)))
        renew_every = settings.EMS_JOB_LEASE_SECONDS / 4
        renewed = time.monotonic()
        answers = []
        for k, errors, future in futures:
            answers.append((k, errors, *future.result()))
            if time.monotonic() - renewed >= renew_every:
                if not _renew(part.pk, owner):
                    return None
                renewed = time.monotonic()
    finally:
        for *_, future in futures:
            future.cancel()
    if Job.objects.filter(pk=job.pk, status__in=Job.ENDED).exists():
        _release(part.pk, owner, JobPart.CANCELLED)
        return None
    return _output_body(raw, bad, answers, part, size)


def _output_body(raw: list, bad: dict, answers: list, part: JobPart, size: int) -> tuple:
    """The part's output (one line per input line, in order) and its failed lines. Without a
    failed line — the common case — the answers' lines are joined as they are."""
    failed = dict(bad)
    for k, skipped, _, errors in answers:
        if errors:  # indexes among the batch's sent lines: back to indexes in the part
            sent = [k + i for i in range(len(raw[k : k + size])) if i not in skipped]
            failed.update((sent[i], e) for i, e in errors.items())
    lines = [line for _, _, batch, _ in answers for line in batch]
    if bad:
        sent = iter(lines)
        lines = [io.error_line(bad[i]) if i in bad else next(sent) for i in range(len(raw))]
    body = b"\n".join(lines) + b"\n" if lines else b""
    errors = [
        {"file": part.file.input_key, "line": part.start + i + 1, "error": failed[i]}
        for i in sorted(failed)
    ]
    return body, errors


class _Bytes:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else self.pos + size
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


def complete(part: JobPart, owner: str, errors: list[dict]) -> bool:
    """Mark the part done and count its lines, once."""
    now = timezone.now()
    with transaction.atomic():
        if not JobPart.objects.filter(pk=part.pk, status=JobPart.RUNNING, lease_owner=owner).update(
            status=JobPart.DONE,
            failed=len(errors),
            finished_at=now,
            lease_owner="",
            lease_until=None,
        ):
            return False
        Job.objects.filter(pk=part.job_id).update(
            done=F("done") + part.lines, failed=F("failed") + len(errors), updated_at=now
        )
        if errors:
            job = Job.objects.select_for_update().get(pk=part.job_id)
            if len(job.errors) < ERROR_SAMPLE:
                sample = (job.errors + errors)[:ERROR_SAMPLE]
                Job.objects.filter(pk=job.pk).update(errors=sample)
    return True


# --- assembly and the end -----------------------------------------------------------------------
def assemble_ready(job: Job) -> None:
    for file in job.files.filter(state__in=(JobFile.PENDING, JobFile.ASSEMBLING)):
        assemble(job, file)


def _claim_assembly(file: JobFile) -> bool:
    now = timezone.now()
    return bool(
        JobFile.objects.filter(pk=file.pk)
        .filter(
            Q(state=JobFile.PENDING)
            | Q(state=JobFile.ASSEMBLING, lease_until__lt=now)
            | Q(state=JobFile.ASSEMBLING, lease_until__isnull=True)
        )
        .update(state=JobFile.ASSEMBLING, lease_until=now + _lease())
    )


def assemble(job: Job, file: JobFile, storage=None) -> bool:
    """Write the file's output from its parts when all are done (once); True when written."""
    if JobPart.objects.filter(file=file).exclude(
        status=JobPart.DONE
    ).exists() or not _claim_assembly(file):
        return False
    parts = list(JobPart.objects.filter(file=file).select_related("file").order_by("index"))
    storage, bucket = storage or _storage(job), _output(job).bucket
    keys = [part_key(job, part) for part in parts]
    reader = io.ChainReader(storage, bucket, keys)
    try:
        storage.write(bucket, file.output_key, reader)
    finally:
        reader.close()
    if not JobFile.objects.filter(pk=file.pk, state=JobFile.ASSEMBLING).update(
        state=JobFile.ASSEMBLED, assembled_at=timezone.now(), lease_until=None
    ):
        return False
    for key in keys:
        try:
            storage.delete(bucket, key)
        except StorageError:
            log.warning("removing the part object %s of job %s failed", key, job.job_id)
    _emit(job, "assembled", f"{file.output_key}: {file.lines} line(s)")
    return True


def finish_files(job: Job) -> None:
    """After a job ended: files whose every part is done are assembled; the others are marked
    cancelled (their finished parts stay readable under the output's .parts/ folder)."""
    assemble_ready(job)
    for file in job.files.filter(state=JobFile.PENDING):
        if file.parts.exclude(status=JobPart.DONE).exists():
            JobFile.objects.filter(pk=file.pk, state=JobFile.PENDING).update(
                state=JobFile.CANCELLED
            )
    JobPart.objects.filter(job=job, status=JobPart.PENDING).update(status=JobPart.CANCELLED)


def maybe_finish(job: Job) -> bool:
    """End the job when every file is assembled: Succeeded, or Failed past the threshold."""
    if job.files.exclude(state=JobFile.ASSEMBLED).exists():
        return False
    job.refresh_from_db()
    if job.is_ended:
        return True
    if job.failed > job.max_failed:
        return _end(
            job,
            Job.FAILED,
            f"{job.failed} line(s) failed, more than the job's threshold of {job.max_failed}",
            level=JobEvent.ERROR,
        )
    return _end(
        job,
        Job.SUCCEEDED,
        f"{job.done} line(s) written to {job.output_url}"
        + (f", {job.failed} of them errors" if job.failed else ""),
    )
