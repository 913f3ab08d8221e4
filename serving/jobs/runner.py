"""The execution of batch jobs (not yet complete: see docs/batch-jobs.md)."""

from __future__ import annotations

from django.utils import timezone

from serving.jobs.models import Job, JobPart

WAITING, QUEUED, ENDED = "waiting", "queued", "ended"


def cancel_parts(job: Job) -> int:
    return JobPart.objects.filter(job=job, status=JobPart.PENDING).update(
        status=JobPart.CANCELLED, finished_at=timezone.now()
    )


def dispatch(job_pk: int) -> str:
    raise NotImplementedError


def run_part(part_pk: int) -> str:
    raise NotImplementedError


def sweep() -> dict:
    return {}
