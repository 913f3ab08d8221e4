"""Thin Celery tasks: ids in, one reconciler call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from serving import reconciler


@shared_task(name="serving.reconcile_service", ignore_result=True, bind=True, max_retries=None)
def reconcile_service(self, service_pk: int, attempt: int = 0) -> str:
    result = reconciler.reconcile(service_pk)
    if result == reconciler.BUSY and attempt < 30:
        # another pass holds the lease; it may have read the state before our change
        reconcile_service.apply_async((service_pk, attempt + 1), countdown=2)
    elif result == reconciler.PROGRESSING:
        # instances are starting or waiting for their backoff: look again shortly
        reconcile_service.apply_async((service_pk, 0), countdown=2)
    return result


@shared_task(name="serving.reconcile_all", ignore_result=True)
def reconcile_all() -> dict:
    return {str(key): value for key, value in reconciler.reconcile_all().items()}


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
