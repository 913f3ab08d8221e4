"""Thin Celery tasks of batch jobs: ids in, one runner call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from serving.jobs import runner

WAIT_EVERY = 2  # seconds between looks while a job waits for its instances
WAIT_LOOKS = 600  # then beat's sweep takes over


@shared_task(name="serving.job_dispatch", ignore_result=True)
def job_dispatch(job_pk: int, looks: int = 0) -> str:
    """Plan the job (count lines, write parts), queue its pending parts, assemble finished
    files, end it when all is written. While its instances start, look again every 2 s."""
    result = runner.dispatch(job_pk)
    if result == runner.WAITING and looks < WAIT_LOOKS:
        job_dispatch.apply_async((job_pk, looks + 1), countdown=WAIT_EVERY)
    return result


@shared_task(name="serving.job_run_part", ignore_result=True)
def job_run_part(part_pk: int) -> str:
    """Claim one part (a conditional UPDATE with a lease), predict its lines, write its output
    object, mark it done; then assemble its file and end the job when that was the last."""
    return runner.run_part(part_pk)


@shared_task(name="serving.jobs_sweep", ignore_result=True)
def jobs_sweep() -> dict:
    """Beat: every job not ended — parts whose lease expired go back to pending and are queued
    again (their worker died), stalled files are assembled, finished jobs end."""
    return runner.sweep()
