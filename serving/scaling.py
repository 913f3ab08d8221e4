"""Scaling policies: what a deploy or ``PATCH …/scaling/`` may ask for, validated.

Manual: ``replicas`` (1..100). Automatic: ``min`` (0..100; 0 = scale to zero when idle),
``max`` (>= min, >= 1), ``start`` (the count a deploy launches, within max(min, 1)..max) and
one trigger or more, each metric at most once: ``cpu`` / ``memory`` / ``gpu`` with a target of
1..100 percent of the instance's limits, ``qps`` with a target of 1..100000 requests per second
per instance. The autoscaler (serving/autoscaler.py) acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

MANUAL, AUTO = "manual", "auto"
TRIGGER_METRICS = ("cpu", "memory", "gpu", "qps")
PERCENT_METRICS = ("cpu", "memory", "gpu")
MAX_QPS_TARGET = 100000
MAX_REPLICAS = 100


@dataclass(frozen=True)
class Scaling:
    mode: str = MANUAL
    replicas: int = 1
    min: int = 1
    max: int = 1
    start: int = 1
    triggers: list = field(default_factory=list)


def validate_triggers(items) -> list[dict]:
    triggers, seen = [], set()
    for item in items or []:
        metric = item.get("metric") if isinstance(item, dict) else None
        target = item.get("target") if isinstance(item, dict) else None
        if metric not in TRIGGER_METRICS:
            raise ValidationError(
                {"triggers": f"A trigger's metric is one of {', '.join(TRIGGER_METRICS)}."}
            )
        if metric in seen:
            raise ValidationError({"triggers": f"The {metric} trigger is given twice."})
        seen.add(metric)
        top = MAX_QPS_TARGET if metric == "qps" else 100
        if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= top:
            unit = "requests per second per instance" if metric == "qps" else "percent"
            raise ValidationError(
                {"triggers": f"The {metric} target is a whole number from 1 to {top} ({unit})."}
            )
        triggers.append({"metric": metric, "target": target})
    if not triggers:
        raise ValidationError({"triggers": "Automatic scaling needs at least one trigger."})
    return triggers


def validate(scaling: Scaling) -> dict:
    """The Service fields of a scaling policy (``scaling_mode``, ``replicas``, ``autoscale``)."""
    if scaling.mode == MANUAL:
        if not 1 <= scaling.replicas <= MAX_REPLICAS:
            raise ValidationError({"replicas": f"The instance count is 1 to {MAX_REPLICAS}."})
        return {"scaling_mode": MANUAL, "replicas": scaling.replicas, "autoscale": {}}
    if scaling.mode != AUTO:
        raise ValidationError({"scaling_mode": "Scaling is manual or auto."})
    if not (0 <= scaling.min <= scaling.max <= MAX_REPLICAS and scaling.max >= 1):
        raise ValidationError(
            {"min": f"The range needs 0 <= min <= max <= {MAX_REPLICAS} and max >= 1."}
        )
    if not max(scaling.min, 1) <= scaling.start <= scaling.max:
        raise ValidationError(
            {"start": f"The start count must lie within {max(scaling.min, 1)}..{scaling.max}."}
        )
    triggers = validate_triggers(scaling.triggers)
    return {
        "scaling_mode": AUTO,
        "replicas": scaling.start,
        "autoscale": {
            "min": scaling.min,
            "max": scaling.max,
            "start": scaling.start,
            "triggers": triggers,
        },
    }
