"""Prometheus metrics of the runtime server, in a registry of its own."""

from __future__ import annotations

from time import perf_counter
from typing import Any

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

        self._children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def observe(self, model: str, version: str, method: str, status: int, start: float) -> None:
        """Count one answer that took from ``start`` (``perf_counter()``) until now."""
        key = (model, version, method, status)
        children = self._children.get(key)
        if children is None:  # labels() looks up a dict under a lock: once per label set
            labels = (model, version, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(perf_counter() - start)

    def render(self) -> bytes:
        return generate_latest(self.registry)
