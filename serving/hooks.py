"""Seams other parts plug into, so serving never imports them.

``on_instances_changed(service)`` is called by the reconciler (outside any transaction, after
the pass committed) whenever the set of a service's instances, their addresses or readiness,
or the service's desired state changed. The gateway's route publisher registers itself here
(``register_instances_listener(serving.routes.publish_service)`` from its ``ready()``); the
route is then rebuilt from the database: instances in state ``running`` with their address.
A listener's failure is logged and never breaks reconciling (the next pass calls it again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_listeners: list[Callable] = []


def register_instances_listener(listener: Callable) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def unregister_instances_listener(listener: Callable) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def on_instances_changed(service) -> None:
    for listener in list(_listeners):
        try:
            listener(service)
        except Exception:  # a route publisher must never stop the reconciler
            log.exception("instances listener %r failed for %s", listener, service.service_id)
