"""Prometheus metrics of the runtime server, in a registry of its own."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Buckets from 0.25 ms: the interesting latencies of small models are sub-millisecond.
LATENCY_BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Request counts and latency by model, version, verb and HTTP status."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "version", "method", "status")
        self.requests = Counter(
            "ems_runtime_requests_total", "Requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "ems_runtime_request_duration_seconds",
            "Time from request received to answer written",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ems_runtime_requests_in_flight", "Requests being answered", registry=self.registry
        )
        self.batch_size = Histogram(
            "ems_runtime_batch_size",
            "Rows per model call (adaptive batching merges concurrent requests)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.ready = Gauge(
            "ems_runtime_model_available", "1 once the model is warm", registry=self.registry
        )

    def observe(self, model: str, version: str, method: str, status: int, seconds: float) -> None:
        key = (model, version, method, str(status))
        self.requests.labels(*key).inc()
        self.latency.labels(*key).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
