"""The autoscaler: Kubernetes HPA's rule on the metrics poller's values (docs/serving.md).

For every automatic service, after each metrics pass:

1. **Per trigger** (CPU / memory / GPU: mean percent of the instances' limits; QPS: requests per
   second per ready instance, from the gateways): ``ratio = value / target``; within the 10 %
   tolerance (``|ratio - 1| <= 0.1``) the trigger proposes the current count, otherwise
   ``ceil(ready × ratio)``. A trigger without a value (no GPU, no gateway) proposes nothing.
2. The **recommendation** is the maximum over the triggers, clamped to ``[max(min, 1), max]``.
3. **Scale out** at once, rate-limited: at most to ``max(2 × current, current + 4)`` per step,
   and not again while instances of the previous step are still starting.
4. **Scale in** only to the highest recommendation of the last
   ``EMS_AUTOSCALE_STABILIZATION_SECONDS`` (the part of the window not yet observed counts as
   the current count), so noise around the target never flaps the count.
5. **Scale to zero** (min 0): after ``EMS_AUTOSCALE_IDLE_SECONDS`` without a request; a request
   then wakes the service (gateway/wake.py → ``process_wakes``).
6. What capacity (or, later, a quota) allows: ``serving.limits.allowed_replicas``; a count held
   below the wanted one is a ``capped`` event. Changes go through
   ``serving.services.service_autoscale`` (the platform's audited path) and every change is an
   ``autoscaled`` event with the numbers behind it.

``decide`` is pure (the decision table tests call it directly); ``autoscale_all`` and
``process_wakes`` do the reading and writing.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from serving import events, limits
from serving.metrics.models import AutoscalerState
from serving.models import Instance, Service, ServiceEvent

log = logging.getLogger(__name__)

TOLERANCE = 0.1
UNITS = {"cpu": "%", "memory": "%", "gpu": "%", "qps": " req/s per instance"}


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    triggers: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, service: Service) -> Policy:
        auto = service.autoscale or {}
        triggers = tuple((t["metric"], int(t["target"])) for t in auto.get("triggers", ()))
        return cls(int(auto.get("min", 1)), int(auto.get("max", 1)), triggers)


@dataclass
class Observation:
    current: int  # the desired count now (Service.replicas)
    ready: int  # running instances (whose metrics the values are)
    starting: int = 0  # pending or starting instances of the current revision
    values: dict[str, float | None] = field(default_factory=dict)  # cpu/memory/gpu %, qps total


@dataclass
class Decision:
    desired: int
    recommendation: int
    reason: str
    numbers: dict
    history: list


def recommend(policy: Policy, obs: Observation) -> tuple[int | None, dict]:
    """The maximum over the triggers' proposals (None when no trigger had a value)."""
    base = obs.ready or obs.current
    numbers: dict = {}
    proposals = []
    for metric, target in policy.triggers:
        value = obs.values.get(metric)
        if value is None or base <= 0:
            numbers[metric] = {"value": None, "target": target}
            continue
        per = value / base if metric == "qps" else value
        ratio = per / target
        within = abs(ratio - 1.0) <= TOLERANCE
        proposal = obs.current if within else math.ceil(base * ratio - 1e-9)
        proposals.append(proposal)
        numbers[metric] = {"value": round(per, 2), "target": target, "proposal": proposal}
    return (max(proposals) if proposals else None), numbers


def decide(
    policy: Policy,
    obs: Observation,
    *,
    now: float,
    history: list,
    stabilization: float,
    idle_for: float | None = None,
    idle_window: float = 300.0,
) -> Decision:
    """The count the service should have now; ``history`` is ``[[time, recommendation], …]``
    of earlier passes (the returned ``Decision.history`` replaces it)."""
    raw, numbers = recommend(policy, obs)
    lower = max(policy.min, 1)
    current = obs.current
    keep = [[t, n] for t, n in history if t >= now - stabilization]

    def done(desired: int, rec: int, reason: str) -> Decision:
        numbers.update(current=current, ready=obs.ready, recommendation=rec, desired=desired)
        return Decision(desired, rec, reason, numbers, keep)

    if current == 0:  # asleep: only a request (process_wakes) or a raised minimum wakes it
        if policy.min > 0:
            return done(policy.min, policy.min, f"minimum is {policy.min}")
        return done(0, 0, "asleep")
    if policy.min == 0 and idle_for is not None and idle_for >= idle_window:
        keep.clear()
        return done(0, 0, f"no request for {idle_for:.0f} s (idle window {idle_window:.0f} s)")
    rec = current if raw is None else min(max(raw, lower), policy.max)
    keep.append([now, rec])
    if current > policy.max or current < lower:
        target = min(max(current, lower), policy.max)
        return done(target, rec, f"outside the range {policy.min}..{policy.max}")
    if raw is None:
        return done(current, rec, "no metric value")
    if rec > current:
        if obs.starting:
            return done(current, rec, f"waiting for {obs.starting} starting instance(s)")
        step = max(2 * current, current + 4)
        desired = min(rec, step)
        why = " (rate limit)" if desired < rec else ""
        return done(desired, rec, _why(numbers, policy) + why)
    if rec < current:
        window = [n for t, n in keep if t >= now - stabilization]
        if not history or min(t for t, _ in history) > now - stabilization + 1e-6:
            window.append(current)  # the unobserved part of the window counts as "current"
        desired = min(current, max(window))
        if desired == current:
            return done(current, rec, f"scale-in held by the {stabilization:.0f} s window")
        return done(desired, rec, _why(numbers, policy) + f" (stable for {stabilization:.0f} s)")
    return done(current, rec, "within tolerance" if raw is not None else "no metric value")


def _why(numbers: dict, policy: Policy) -> str:
    parts = []
    for metric, target in policy.triggers:
        n = numbers.get(metric) or {}
        if n.get("value") is None:
            parts.append(f"{metric} n/a")
        else:
            unit = UNITS[metric]
            value, proposal = n["value"], n["proposal"]
            parts.append(f"{metric} {value:g}{unit} vs target {target}{unit} → {proposal}")
    return "; ".join(parts)


# --- reading and writing ------------------------------------------------------------------
def candidates():
    return (
        Service.objects.live()
        .online()
        .filter(scaling_mode=Service.AUTO, desired=Service.RUN, revision__isnull=False)
        .exclude(status__in=(Service.FAILED, Service.UPDATING, Service.STOPPING))
    )


def autoscale_all(result, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Decide for every automatic service on the values of one metrics pass
    (``serving.metrics.poller.PollResult``); returns service id -> desired count."""
    now = now or timezone.now()
    out = {}
    for service in candidates().select_related("group", "revision", "tenant", "region"):
        metrics = result.services.get(service.pk)
        if metrics is None:
            continue
        try:
            out[service.service_id] = autoscale_service(service, metrics, now=now)
        except Exception:
            log.exception("autoscaling %s failed", service.service_id)
    return out


def autoscale_service(service: Service, metrics, *, now: dt.datetime) -> int:
    state, _ = AutoscalerState.objects.get_or_create(service=service)
    policy = Policy.of(service)
    fields = ["recommendations", "last_decision", "updated_at"]  # only what this pass owns:
    if metrics.rps:  # the wake task writes the others concurrently
        state.last_request_at = now
        fields.append("last_request_at")
    idle_since = max(
        t for t in (state.last_request_at, state.last_scale_at, state.created_at) if t is not None
    )
    starting = service.instances.filter(
        revision=service.revision, state__in=(Instance.PENDING, Instance.STARTING)
    ).count()
    obs = Observation(
        current=service.replicas,
        ready=metrics.ready,
        starting=starting,
        values={m: metrics.value(m) for m, _ in policy.triggers},
    )
    decision = decide(
        policy,
        obs,
        now=now.timestamp(),
        history=state.recommendations or [],
        stabilization=settings.EMS_AUTOSCALE_STABILIZATION_SECONDS,
        idle_for=None if metrics.rps is None else (now - idle_since).total_seconds(),
        idle_window=settings.EMS_AUTOSCALE_IDLE_SECONDS,
    )
    state.recommendations = decision.history
    previous_cap = (state.last_decision or {}).get("capped")
    decision.numbers["reason"] = decision.reason
    desired = decision.desired
    if desired > service.replicas:
        allowed, limit = limits.allowed_replicas(service, desired)
        if allowed < desired:
            decision.numbers["capped"] = [desired, allowed]
            if previous_cap != [desired, allowed]:
                events.emit(
                    service,
                    events.CAPPED,
                    f"autoscaler wanted {desired} instance(s), capped at {allowed} by {limit}",
                    level=ServiceEvent.WARNING,
                )
            desired = max(allowed, service.replicas)
    state.last_decision = decision.numbers
    if desired != service.replicas:
        from serving.services import InsufficientResources, service_autoscale

        try:
            service_autoscale(
                service=service,
                replicas=desired,
                expected=service.replicas,
                message=_message(service.replicas, desired, decision),
                detail=decision.numbers,
                kind=events.SLEEPING if desired == 0 else events.AUTOSCALED,
            )
            state.last_scale_at = now
            fields.append("last_scale_at")
        except InsufficientResources as exc:  # claimed by someone else meanwhile
            events.emit(service, events.CAPPED, exc.message, level=ServiceEvent.WARNING)
            desired = service.replicas
    state.updated_at = now
    state.save(update_fields=fields)
    return desired


def _message(before: int, after: int, decision: Decision) -> str:
    if after == 0:
        return f"autoscaler: {before} → 0, sleeping: {decision.reason}"
    return f"autoscaler: {before} → {after}: {decision.reason}"


def process_wakes(store=None) -> list[str]:
    """Wake every sleeping service a gateway asked for (``RouteStore.wake_requests``)."""
    from serving.publish import store as route_store
    from serving.services import InsufficientResources, service_autoscale

    store = store or route_store()
    woken = []
    for service_id, at in store.wake_requests().items():
        service = (
            Service.objects.live()
            .online()
            .filter(service_id=service_id)
            .select_related("group", "revision", "tenant", "region")
            .first()
        )
        if (
            service is not None
            and service.scaling_mode == Service.AUTO
            and service.desired == Service.RUN
            and service.replicas == 0
        ):
            now = timezone.now()
            wanted = max(Policy.of(service).min, 1)
            try:
                service_autoscale(
                    service=service,
                    replicas=wanted,
                    expected=0,
                    message=f"woken by a request: 0 → {wanted}",
                    detail={"reason": "request at zero instances", "desired": wanted},
                    kind=events.WOKEN,
                )
            except InsufficientResources as exc:  # the gateway asks again while it holds
                events.emit(service, events.CAPPED, exc.message, level=ServiceEvent.WARNING)
                store.clear_wake(service_id, at)
                continue
            AutoscalerState.objects.update_or_create(
                service=service,
                defaults={"last_request_at": now, "last_scale_at": now, "recommendations": []},
            )
            woken.append(service_id)
        store.clear_wake(service_id, at)
    return woken
