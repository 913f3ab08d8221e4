"""The time-series rows of the metrics poller and the autoscaler's memory."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

RAW, MINUTE = 0, 60  # MetricPoint.resolution: a raw sample, or the mean of one minute


class MetricPoint(models.Model):
    """One sample of a service (``instance_id`` empty: the service as a whole) or of one of its
    instances. Raw rows live ``EMS_METRICS_RAW_RETENTION`` seconds; every finished minute is
    rolled up into one ``resolution=60`` row kept ``EMS_METRICS_MINUTE_RETENTION`` seconds.
    A value is NULL where it is not available (no GPU, no gateway traffic seen)."""

    service = models.ForeignKey(
        "serving.Service", on_delete=models.CASCADE, related_name="metric_points"
    )
    instance_id = models.CharField(max_length=40, blank=True, default="")
    resolution = models.PositiveSmallIntegerField(default=RAW)
    at = models.DateTimeField()
    replicas = models.FloatField(null=True, blank=True)
    rps = models.FloatField(null=True, blank=True)
    error_rate = models.FloatField(null=True, blank=True)
    p50_ms = models.FloatField(null=True, blank=True)
    p99_ms = models.FloatField(null=True, blank=True)
    cpu_percent = models.FloatField(null=True, blank=True)
    memory_percent = models.FloatField(null=True, blank=True)
    gpu_percent = models.FloatField(null=True, blank=True)
    gpu_devices = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["service_id", "resolution", "at"]
        indexes = [
            models.Index(fields=["service", "resolution", "instance_id", "at"]),
            models.Index(fields=["resolution", "at"]),
        ]

    def __str__(self) -> str:
        return f"{self.service_id}/{self.instance_id or '*'} @{self.at:%H:%M:%S}"


class AutoscalerState(models.Model):
    """What the autoscaler remembers of one service between passes: its recent recommendations
    (for the scale-in stabilization window), when it last scaled, and the last request seen
    (for scale to zero)."""

    service = models.OneToOneField(
        "serving.Service", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    recommendations = models.JSONField(default=list, blank=True)  # [[unix time, replicas], ...]
    last_request_at = models.DateTimeField(null=True, blank=True)
    last_scale_at = models.DateTimeField(null=True, blank=True)
    last_decision = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"autoscaler state of {self.service_id}"
