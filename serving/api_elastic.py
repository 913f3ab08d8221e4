"""The elastic half of the services API: the scaling policy and the monitoring series.

* ``PATCH /api/v1/services/{id}/scaling/`` — change the scaling policy after deploy
  (``scaling_mode``; ``replicas`` for manual; ``min_replicas``, ``max_replicas``,
  ``start_replicas``, ``triggers`` for auto). Fields not sent keep their current values.
* ``GET /api/v1/services/{id}/metrics/?window=1h|24h`` — ``{"series": {"replicas", "rps",
  "p50_ms", "p99_ms", "error_rate", "cpu_percent", "memory_percent", "gpu_percent"},
  "events": [...]}``, each series a list of ``[unix time, value]``.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from serving import scaling as scaling_policy
from serving.metrics import series
from serving.models import Service


class TriggerSerializer(serializers.Serializer):
    metric = serializers.ChoiceField(choices=scaling_policy.TRIGGER_METRICS)
    target = serializers.IntegerField(
        min_value=1,
        max_value=scaling_policy.MAX_QPS_TARGET,
        help_text="Percent of the instance's limits (cpu, memory, gpu: 1-100) or requests per "
        "second per instance (qps).",
    )


class ScalingSerializer(serializers.Serializer):
    scaling_mode = serializers.ChoiceField(choices=Service.SCALING, required=False)
    replicas = serializers.IntegerField(min_value=1, required=False)
    min_replicas = serializers.IntegerField(min_value=0, required=False)
    max_replicas = serializers.IntegerField(min_value=1, required=False)
    start_replicas = serializers.IntegerField(min_value=1, required=False)
    triggers = TriggerSerializer(many=True, required=False)

    def scaling(self, service: Service) -> scaling_policy.Scaling:
        """The full policy: what was sent over what the service has now."""
        data = self.validated_data
        auto = service.autoscale or {}
        mode = data.get("scaling_mode", service.scaling_mode)
        current = max(service.replicas, 1)
        low = data.get("min_replicas", auto.get("min", 1))
        high = data.get("max_replicas", auto.get("max", max(current, 1)))
        start = data.get(
            "start_replicas", min(max(auto.get("start", current), max(low, 1)), max(high, 1))
        )
        return scaling_policy.Scaling(
            mode=mode,
            replicas=data.get("replicas", current),
            min=low,
            max=high,
            start=start,
            triggers=data.get("triggers", auto.get("triggers", [])),
        )


class MetricsSerializer(serializers.Serializer):
    series = serializers.DictField(
        child=serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))
    )
    events = serializers.ListField(child=serializers.DictField())


class ElasticActions:
    """Mixed into ``ServiceViewSet`` (its ``required_actions`` names these two)."""

    @extend_schema(request=ScalingSerializer, responses={200: None})
    @action(detail=True, methods=["patch"])
    def scaling(self, request, *args, **kwargs):
        """Change the scaling policy; an automatic service's count is clamped into the new range
        at once. A manual ``scale/`` of an automatic service is refused: change it here."""
        from serving import services

        service = self.get_object()
        form = ScalingSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        service = services.service_set_scaling(
            actor=self.actor(), service=service, scaling=form.scaling(service)
        )
        return self._done(service)

    @extend_schema(
        responses=MetricsSerializer,
        parameters=[OpenApiParameter("window", str, enum=list(series.WINDOWS), default="1h")],
    )
    @action(detail=True, methods=["get"])
    def metrics(self, request, *args, **kwargs):
        """Replicas, requests per second, p50/p99 latency, error rate, CPU / memory / GPU
        utilisation over the window, and the scaling and health events in it."""
        window = request.query_params.get("window", "1h")
        return Response(series.service_series(self.get_object(), window))
