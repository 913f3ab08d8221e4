"""Seams other parts plug into, so serving never imports them.

``on_instances_changed(service)`` is called by the reconciler (outside any transaction, after
the pass committed) whenever the set of a service's instances, their addresses or readiness,
or the service's desired state changed. The gateway's route publisher registers itself here
(``register_instances_listener(gateway.routes.publish_service)`` from its ``ready()``); the
route is then rebuilt from the database: instances in state ``running`` with their address.
A listener's failure is logged and never breaks reconciling (the next pass calls it again).

``before_instances_stop(service, instance_ids)`` is called right before the reconciler sends
SIGTERM to instances that may be in a route (they are already ``stopping`` in the database). A
drain listener (``register_drain_listener(serving.publish.drain)``) takes them out of the route
and waits for the gateways to finish their in-flight requests; without one, the instances
listeners are called instead (the route is rebuilt without them, no waiting).

``on_quiet_pass(service)`` is called after a pass that changed nothing; the route publisher uses
it to check the stored route and repair it when an earlier publish failed (e.g. Redis was down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_listeners: list[Callable] = []
_drain_listeners: list[Callable] = []
_quiet_listeners: list[Callable] = []


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


def register_drain_listener(listener: Callable) -> None:
    if listener not in _drain_listeners:
        _drain_listeners.append(listener)


def unregister_drain_listener(listener: Callable) -> None:
    if listener in _drain_listeners:
        _drain_listeners.remove(listener)


def before_instances_stop(service, instance_ids) -> None:
    ids = list(instance_ids)
    if not ids:
        return
    if not _drain_listeners:
        on_instances_changed(service)
        return
    for listener in list(_drain_listeners):
        try:
            listener(service, ids)
        except Exception:  # draining is best effort: the instances stop anyway
            log.exception("drain listener %r failed for %s", listener, service.service_id)


def register_quiet_pass_listener(listener: Callable) -> None:
    if listener not in _quiet_listeners:
        _quiet_listeners.append(listener)


def unregister_quiet_pass_listener(listener: Callable) -> None:
    if listener in _quiet_listeners:
        _quiet_listeners.remove(listener)


def on_quiet_pass(service) -> None:
    for listener in list(_quiet_listeners):
        try:
            listener(service)
        except Exception:
            log.exception("quiet-pass listener %r failed for %s", listener, service.service_id)
