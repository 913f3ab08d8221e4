"""Read queries of batch jobs, always through the tenant-scoping choke point."""

from __future__ import annotations

from serving.jobs.models import Job, JobEvent, JobFile


def jobs(*, actor, action: str = "ems:DescribeJobs"):
    return (
        Job.objects.for_actor(actor, action)
        .select_related("region", "group", "config", "version__runtime", "service__revision")
        .order_by("-created_at")
    )


def job(*, actor, job_id: str, action: str = "ems:DescribeJob") -> Job:
    """Raises ``Job.DoesNotExist`` for another tenant's job (a 404)."""
    return jobs(actor=actor, action=action).get(job_id=job_id)


def events(*, job: Job, limit: int = 200):
    return JobEvent.objects.filter(job=job).order_by("-created_at", "-id")[:limit]


def files(*, job: Job):
    return JobFile.objects.filter(job=job).order_by("index")


def instances(*, job: Job):
    if job.service_id is None:
        return []
    return job.service.instances.select_related("node").order_by("-created_at")
