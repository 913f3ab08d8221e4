"""Thin Celery tasks: ids in, one reconciler call, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from serving import reconciler

BUSY_RETRIES = 30  # a BUSY pass retries every 2 s this many times
RETRY_EVERY = 2
# follow-ups of a pass started by reconcile_all: about one beat period, after which beat's
# next round looks again (so these short chains never pile up)
SWEEP_FOLLOW_UPS = 8


@shared_task(name="serving.reconcile_service", ignore_result=True, bind=True, max_retries=None)
def reconcile_service(self, service_pk: int, attempt: int = 0, budget: int | None = None) -> str:
    """``budget``: how many more follow-ups this chain may queue (None: until the service is
    idle — the chains started by a change)."""
    result = reconciler.reconcile(service_pk)
    if budget is not None:
        if budget <= 0:
            return result
        budget -= 1
    if result == reconciler.BUSY and attempt < BUSY_RETRIES:
        # another pass holds the lease; it may have read the state before our change
        reconcile_service.apply_async((service_pk, attempt + 1, budget), countdown=RETRY_EVERY)
    elif result == reconciler.PROGRESSING:
        # instances are starting or waiting for their backoff: look again shortly
        reconcile_service.apply_async((service_pk, 0, budget), countdown=RETRY_EVERY)
    return result


@shared_task(name="serving.reconcile_all", ignore_result=True)
def reconcile_all() -> dict:
    """Every service (beat, and every worker once when it starts: ``portal.celery``). A service
    that another pass holds, or that is still progressing, is looked at again every 2 s for a
    beat period: when the holder was a worker killed mid-pass, its lease runs out within
    ``EMS_SERVING_LEASE_SECONDS`` and the service converges without waiting for beat."""
    results = reconciler.reconcile_all()
    for pk, result in results.items():
        if result in (reconciler.BUSY, reconciler.PROGRESSING):
            first = BUSY_RETRIES - SWEEP_FOLLOW_UPS if result == reconciler.BUSY else 0
            budget = max(SWEEP_FOLLOW_UPS, settings.EMS_SERVING_LEASE_SECONDS // RETRY_EVERY + 2)
            reconcile_service.apply_async((pk, first, budget), countdown=RETRY_EVERY)
    return {str(key): value for key, value in results.items()}


@shared_task(name="serving.probe_instances", ignore_result=True)
def probe_instances() -> dict:
    """Health of running instances (``serving.health``); beat runs it every
    ``EMS_HEALTH_PROBE_INTERVAL`` seconds."""
    from serving import health

    return health.check_running()


@shared_task(name="serving.poll_metrics", ignore_result=True)
def poll_metrics() -> dict:
    """One metrics pass over every running instance, then the autoscaler's decisions."""
    from serving import autoscaler
    from serving.metrics import poller

    result = poller.poll()
    decided = autoscaler.autoscale_all(result)
    return {"instances": result.instances, "seconds": round(result.seconds, 3), **decided}


@shared_task(name="serving.wake_services", ignore_result=True)
def wake_services() -> list[str]:
    """Wake the sleeping services the gateways hold requests for."""
    from serving import autoscaler

    return autoscaler.process_wakes()


# The batch jobs' tasks live with them; imported here so the worker's autodiscovery finds them.
from serving.jobs.tasks import job_dispatch, job_run_part, jobs_sweep  # noqa: E402, F401
