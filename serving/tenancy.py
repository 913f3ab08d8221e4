"""Serving's part when an operator suspends, reinstates or deletes a tenant
(gathered by ``accounts.lifecycle``).

Suspending stops every running service through ``service_stop`` on a system path (audited as
the platform, with the reason) and republishes every route of the tenant with its ``refuse``
message, so the gateway answers 403 at once (the reconciler publishes the same on its passes).
"""

from __future__ import annotations

import logging

from django.db import transaction

from accounts.actor import PlatformActor

log = logging.getLogger(__name__)


def _live(tenant):
    from serving.models import Service

    return Service.objects.live().filter(tenant=tenant)


def _republish(tenant_pk: int) -> None:
    from serving.models import Service
    from serving.publish import publish_service

    for service in Service.objects.live().filter(tenant_id=tenant_pk):
        try:
            publish_service(service)
        except Exception:  # a store outage: the reconciler's next pass publishes it
            log.exception("publishing %s after a tenant change failed", service.service_id)


def on_suspend(*, tenant, actor) -> None:
    from serving.models import Service
    from serving.services import service_stop

    system = PlatformActor(tenant, reason=f"tenant suspended by {actor.label}")
    for service in _live(tenant).filter(desired=Service.RUN):
        service_stop(actor=system, service=service)
    pk = tenant.pk
    transaction.on_commit(lambda: _republish(pk))


def on_reinstate(*, tenant, actor) -> None:
    pk = tenant.pk
    transaction.on_commit(lambda: _republish(pk))


def delete_blockers(tenant) -> list[str]:
    ids = list(_live(tenant).values_list("service_id", flat=True)[:6])
    if not ids:
        return []
    more = " …" if len(ids) > 5 else ""
    return [
        f"it has services that are not deleted ({', '.join(ids[:5])}{more}): delete them, "
        "or suspend the tenant instead"
    ]
