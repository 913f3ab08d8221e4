"""The invoke flow through a real gateway process, shared by the process-backend test (default
run, file route store) and the Docker e2e (real containers): auth, 401s, stop → 503, resume,
rotate with a grace period, revoke (waiting on the gateway's generation), and zero failed
requests under a steady, never-retrying request loop while the service updates and scales."""

from __future__ import annotations

import http.client
import json
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from serving import access, publish, reconciler
from serving.models import Instance, Service
from tests.serving.conftest import converge, status_is


def running(service) -> list[Instance]:
    return list(service.instances.filter(state=Instance.RUNNING))


def normal_with(n: int):
    return lambda s: s.status == Service.NORMAL and len(running(s)) == n


def settle(gateway) -> None:
    """Wait until the gateway has applied everything published so far."""
    gateway.wait_generation(publish.store().generation(), timeout=10)


def call(gateway, service, body, token=None) -> tuple[int, dict, object]:
    headers = {"x-Auth-Token": token} if token else {}
    return gateway.request(
        "POST", f"/{service.service_id}/v1/models/m:predict", body=body, headers=headers
    )


def run_curl(service, token: str, body_file: Path) -> dict:
    """The seed's curl line, exactly as the invoke page shows it, run by a real curl."""
    line = access.curl_line(service, token)
    assert line.startswith('curl -H "Content-Type: application/json" -H "x-Auth-Token: ')
    assert line.endswith("/v1/models/m:predict -d @flower.json")
    result = subprocess.run(
        [*shlex.split(line), "-sS", "--max-time", "60"],
        cwd=body_file.parent,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return json.loads(result.stdout)


@dataclass
class Loop:
    """Sequential requests on one keep-alive connection, no retries; every non-200 counts."""

    gateway: object
    service: Service
    token: str
    body: object
    ok: int = 0
    failures: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        data = json.dumps(self.body).encode()
        path = f"/{self.service.service_id}/v1/models/m:predict"
        headers = {"Content-Type": "application/json", "x-Auth-Token": self.token}
        conn = http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=60)
        while not self.stop.is_set():
            try:
                conn.request("POST", path, body=data, headers=headers)
                answer = conn.getresponse()
                raw = answer.read()
                if answer.status == 200:
                    self.ok += 1
                else:
                    self.failures.append((answer.status, raw[:200]))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(("error", repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=60)
        conn.close()

    def wait_ok(self, count: int, timeout: float = 120.0) -> None:
        """Until ``count`` more requests succeeded (or one failed): progress, not a sleep."""
        target, deadline = self.ok + count, time.monotonic() + timeout
        while self.ok < target and not self.failures:
            assert time.monotonic() < deadline, f"the request loop made no progress ({self.ok})"
            time.sleep(0.02)

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(90)


def check_auth_flow(*, owner, gateway, service, other, body, body_file, answer_ok, timeout=120):
    """``service`` (auth on) is Normal with one instance; ``other`` is another auth service."""
    settle(gateway)
    token = access.service_token_reveal(actor=owner.membership, service=service)
    assert answer_ok(run_curl(service, token, body_file))
    status, _, _ = call(gateway, service, body)
    assert status == 401
    assert call(gateway, service, body, token="x" * 43)[0] == 401
    other_token = access.service_token_reveal(actor=owner.membership, service=other)
    assert other_token != token
    assert call(gateway, service, body, token=other_token)[0] == 401
    status, _, answer = call(gateway, service, body, token=token)
    assert status == 200 and answer_ok(answer)

    # stop: 503 with Retry-After; resume: answers again
    from serving import services

    services.service_stop(actor=owner.membership, service=service)
    converge(service, status_is(Service.STOPPED), timeout=timeout)
    settle(gateway)
    status, headers, _ = call(gateway, service, body, token=token)
    assert status == 503 and headers.get("retry-after")
    services.service_resume(actor=owner.membership, service=service)
    converge(service, normal_with(1), timeout=timeout, what="Normal after resume")
    settle(gateway)
    assert call(gateway, service, body, token=token)[0] == 200
    return token


def check_rotate_revoke(*, owner, gateway, service, body, token, capture, grace=10):
    """Rotate: the old token works during the grace period, then 401. Revoke: 401 once the
    gateway's generation has reached the revocation's."""
    with capture(execute=True):
        new = access.service_token_rotate(
            actor=owner.membership, service=service, grace_seconds=grace
        )
    rotated_at = time.time()
    settle(gateway)
    assert call(gateway, service, body, token=new)[0] == 200
    assert call(gateway, service, body, token=token)[0] == 200  # within the grace period
    time.sleep(max(0.0, rotated_at + grace + 0.2 - time.time()))  # the grace period is time
    assert call(gateway, service, body, token=token)[0] == 401
    assert call(gateway, service, body, token=new)[0] == 200

    with capture(execute=True):
        fresh = access.service_token_revoke(actor=owner.membership, service=service)
    revoked_generation = publish.store().generation()
    gateway.wait_generation(revoked_generation, timeout=5)
    assert call(gateway, service, body, token=new)[0] == 401
    assert call(gateway, service, body, token=fresh)[0] == 200
    return fresh


def drive(service, until, *, timeout, what):
    """Reconcile passes as the worker would (draining included) until ``until`` holds."""
    return converge(service, until, timeout=timeout, what=what)


def check_zero_failures(
    *, owner, gateway, service, body, token, new_version, new_answer_ok=None, timeout=180
):
    """Update to another version, then scale 1 → 3 → 1, under a steady request loop. After the
    update, ``new_answer_ok(answer)`` must hold for the gateway's answer (the new model)."""
    from serving import services

    with Loop(gateway, service, token, body) as loop:
        loop.wait_ok(5)
        services.service_update(actor=owner.membership, service=service, version=new_version)
        drive(
            service,
            lambda s: normal_with(1)(s)
            and all(i.revision.version_id == new_version.pk for i in running(s)),
            timeout=timeout,
            what="updated",
        )
        settle(gateway)
        if new_answer_ok is not None:
            status, _, answer = call(gateway, service, body, token=token)
            assert status == 200 and new_answer_ok(answer), answer
        services.service_scale(actor=owner.membership, service=service, replicas=3)
        drive(service, normal_with(3), timeout=timeout, what="scaled to 3")
        settle(gateway)
        loop.wait_ok(5)
        services.service_scale(actor=owner.membership, service=service, replicas=1)
        drive(service, normal_with(1), timeout=timeout, what="scaled to 1")
        reconciler.reconcile(service.pk)
        loop.wait_ok(5)
    assert loop.failures == [], loop.failures[:5]
    assert loop.ok >= 15  # three waits for 5 more each, at least
    return loop.ok
