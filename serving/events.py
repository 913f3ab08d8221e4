"""Writing a service's timeline (``ServiceEvent``)."""

from __future__ import annotations

from serving.models import ServiceEvent

SCHEDULED, MODEL_FETCHED, STARTED, HEALTHY = "scheduled", "model-fetched", "started", "healthy"
CRASHED, REPLACED, SCALED, STOPPED, ERROR = "crashed", "replaced", "scaled", "stopped", "error"
UPDATING, STATUS, ORPHAN = "updating", "status", "orphan-removed"
TOKEN = "token"  # noqa: S105 (an event kind)
# the autoscaler (serving/autoscaler.py): every decision that changes the count, a count held
# below the wanted one by capacity (or quota), a service woken by a request / put to sleep
AUTOSCALED, CAPPED, WOKEN, SLEEPING = "autoscaled", "capped", "woken", "sleeping"


def emit(service, kind: str, message: str, *, level: str = ServiceEvent.INFO, instance=None):
    return ServiceEvent.objects.create(
        service=service,
        kind=kind,
        level=level,
        message=message[:8000],
        instance_id=getattr(instance, "instance_id", instance or "") or "",
    )
