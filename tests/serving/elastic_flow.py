"""The elastic flow through a real gateway, shared by the process-backend test (default run)
and the Docker e2e: a bounded request load scales a service out, it returns to its minimum
after the (shortened) stabilization window, zero failed requests across every scale event;
then scale to zero and the first request after it succeeds.

The control loop here plays beat + worker in the test's thread (the test database is one
transaction): every tick one metrics pass (``poller.poll``), the autoscaler's decisions, the
wake requests, and one reconcile pass — what ``serving.poll_metrics``, ``serving.wake_services``
and ``serving.reconcile_service`` do in a deployment.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

from serving import autoscaler, publish, reconciler
from serving.metrics import poller
from serving.models import Instance, Service


@dataclass
class Load:
    """``threads`` callers, each at most ``rate`` requests per second, sequential on one
    keep-alive connection, never retrying; every non-200 is a failure."""

    port: int
    service_id: str
    body: object
    rate: float = 20.0
    threads: int = 2
    token: str = ""
    ok: int = 0
    failures: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        data = json.dumps(self.body).encode()
        path = f"/{self.service_id}/v1/models/m:predict"
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["x-Auth-Token"] = self.token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        gap = 1.0 / self.rate
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                conn.request("POST", path, body=data, headers=headers)
                answer = conn.getresponse()
                raw = answer.read()
                with self.lock:
                    if answer.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append((answer.status, raw[:200]))
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(("error", repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.stop.wait(max(0.0, gap - (time.monotonic() - began)))
        conn.close()

    def __enter__(self):
        self.workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for worker in self.workers:
            worker.join(150)


@dataclass
class Control:
    """Beat + worker for one service, one tick at a time; records what it saw."""

    service: Service
    statuses: list = field(default_factory=list)
    decisions: list = field(default_factory=list)
    poll_seconds: list = field(default_factory=list)

    def tick(self) -> None:
        result = poller.poll()
        self.poll_seconds.append(result.seconds)
        decided = autoscaler.autoscale_all(result)
        if self.service.service_id in decided:
            self.decisions.append(decided[self.service.service_id])
        autoscaler.process_wakes()
        reconciler.reconcile(self.service.pk)
        self.service.refresh_from_db()
        self.statuses.append((self.service.status, self.service.replicas))

    def until(self, condition, *, timeout: float, what: str, interval: float = 1.0) -> float:
        started = time.monotonic()
        while True:
            began = time.monotonic()
            self.tick()
            if condition(self.service):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                events = "\n".join(str(e) for e in self.service.events.order_by("created_at", "id"))
                raise AssertionError(
                    f"{what} not reached in {timeout}s: {self.service.status} "
                    f"x{self.service.replicas}\n{self.statuses[-10:]}\n{events}"
                )
            time.sleep(max(0.0, interval - (time.monotonic() - began)))


def predict(port: int, service_id: str, body, *, timeout: float = 180.0):
    """One request through the gateway: (status, headers, parsed JSON), waiting long enough
    for a service that wakes from zero on a loaded machine."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            f"/{service_id}/v1/models/m:predict",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = conn.getresponse()
        raw = answer.read()
        headers = {k.lower(): v for k, v in answer.getheaders()}
        return answer.status, headers, json.loads(raw) if raw else None
    finally:
        conn.close()


def running(service) -> list[Instance]:
    return list(service.instances.filter(state=Instance.RUNNING))


def served_by(service_id: str, instance_id: str) -> int:
    """Requests the live gateways report the instance has answered."""
    total = 0
    for report in publish.store().gateways().values():
        counters = (report.get("counters") or {}).get(service_id) or {}
        total += ((counters.get("instances") or {}).get(instance_id) or {}).get("count", 0)
    return total


def check_scale_out_and_in(*, control, port, body, rate, threads, timeout=240, token=""):
    """Load → more instances (the new one answering traffic) → no load → back to the
    minimum. Returns the numbers measured."""
    service = control.service
    low = service.autoscale["min"]
    first = {i.instance_id for i in running(service)}
    numbers = {}
    with Load(port, service.service_id, body, rate=rate, threads=threads, token=token) as load:
        started = time.monotonic()
        control.until(lambda s: s.replicas > low, timeout=timeout, what="scale-out decided")
        numbers["decided_s"] = time.monotonic() - started

        def new_serving(s):
            fresh = [i for i in running(s) if i.instance_id not in first]
            return any(served_by(s.service_id, i.instance_id) for i in fresh)

        control.until(new_serving, timeout=timeout, what="new instance serving")
        numbers["serving_s"] = time.monotonic() - started
        time.sleep(2)
    stopped = time.monotonic()
    # a light load (well under the target) keeps running through the scale-in and its drain
    with Load(port, service.service_id, body, rate=2, threads=1, token=token) as light:
        control.until(
            lambda s: s.replicas == low and len(running(s)) == low and s.status == Service.NORMAL,
            timeout=timeout,
            what="back to the minimum",
        )
        numbers["back_to_min_s"] = time.monotonic() - stopped
        time.sleep(1)
    numbers["ok"] = load.ok + light.ok
    numbers["failures"] = list(load.failures) + list(light.failures)
    numbers["statuses"] = sorted({s for s, _ in control.statuses})
    return numbers


def check_scale_to_zero(*, control, gateway_request, timeout=240):
    """Idle → zero instances; one request wakes it and is answered. Returns the seconds the
    request took and its status."""
    control.until(
        lambda s: s.replicas == 0 and not s.instances.filter(state__in=Instance.LIVE).exists(),
        timeout=timeout,
        what="asleep at zero",
    )
    control.tick()  # the route without instances is published and applied
    answer = {}

    def ask():
        began = time.monotonic()
        answer["status"], answer["headers"], answer["body"] = gateway_request()
        answer["seconds"] = time.monotonic() - began

    caller = threading.Thread(target=ask, daemon=True)
    caller.start()
    while caller.is_alive():
        control.tick()
        caller.join(0.2)
    if answer.get("status") != 200:  # say what the control plane did meanwhile
        service = control.service
        answer["events"] = [str(e) for e in service.events.order_by("created_at", "id")][-15:]
        answer["ticks"] = control.statuses[-20:]
        answer["wake_requests"] = publish.store().wake_requests()
    return answer
