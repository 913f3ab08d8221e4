"""Metrics of services and instances: the poller, the time-series store, the queries.

* :mod:`serving.metrics.models` — ``MetricPoint`` (raw samples and per-minute roll-ups, one row
  per service or instance and time) and ``AutoscalerState``.
* :mod:`serving.metrics.poller` — one pass: every running instance's CPU / memory (/ GPU) read
  from its backend in parallel, request rate / errors / latency from the gateways' reports.
* :mod:`serving.metrics.traffic` — gateway counters → rates and percentiles.
* :mod:`serving.metrics.gpu` — NVML (``nvidia-ml-py``) utilisation of the devices an instance holds.
* :mod:`serving.metrics.series` — roll-up, retention and the series the API and page show.
"""
