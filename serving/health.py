"""Health of running instances: the runtime's own model status, probed on a cadence.

Two layers:

* :func:`probe` / :func:`probe_many` — Django-free: ``GET <address>/v1/models/m`` with a short
  timeout, ``ok`` when the runtime reports the model ``AVAILABLE``. The backends' ``health`` and
  the metrics poller / autoscaler use these.
* :func:`check_running` — the periodic task's body (``serving.probe_instances``, every
  ``EMS_HEALTH_PROBE_INTERVAL`` seconds from beat): every ``running`` instance is probed in
  parallel. A failed probe asks the engine what it knows: an instance it reports exited, gone or
  paused (``docker pause``) is unhealthy at once; one it reports running but that does not
  answer (a frozen or wedged runtime, SIGSTOP on the process backend) is unhealthy after
  ``EMS_HEALTH_FAILURE_THRESHOLD`` failures in a row. An unhealthy instance is taken **out of
  the routes first** (``unhealthy_reason`` is set with a conditional UPDATE and the route is
  republished at once through ``serving.publish.after_pass``), then a reconcile is
  queued, which records it as crashed and replaces it (``Pass.observe``). A probe that answers
  again resets the count. An instance is probed by one round at a time (a cache lock per
  instance), so rounds may overlap without counting a frozen instance twice.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

MODEL_NAME = "m"
LOCK_KEY = "ems:serving:probing"
UNHEALTHY = "unhealthy"  # the event kind


@dataclass(frozen=True)
class Probe:
    """One probe's answer: ``ok`` when the model is AVAILABLE; ``detail`` says what happened."""

    ok: bool
    detail: str
    seconds: float


def probe(address: str, *, timeout: float = 1.0) -> Probe:
    """``GET <address>/v1/models/m``; never raises."""
    started = time.monotonic()

    def done(ok: bool, detail: str) -> Probe:
        return Probe(ok, detail, time.monotonic() - started)

    if not address:
        return done(False, "no address")
    url = f"{address.rstrip('/')}/v1/models/{MODEL_NAME}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return done(False, f"HTTP {exc.code}")
    except (TimeoutError, OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return done(False, f"no answer within {timeout:g} s")
        return done(False, f"{type(reason).__name__}: {reason}"[:200])
    except ValueError:
        return done(False, "the answer is not JSON")
    states = [item.get("state") for item in body.get("model_version_status", []) or []]
    if "AVAILABLE" in states:
        return done(True, "AVAILABLE")
    return done(False, f"model state {', '.join(map(str, states)) or 'unknown'}")


def probe_many(addresses, *, timeout: float = 1.0, workers: int = 32) -> dict[str, Probe]:
    """Probe every address at once (threads); ``{address: Probe}``."""
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique)))) as pool:
        answers = pool.map(lambda a: probe(a, timeout=timeout), unique)
        return dict(zip(unique, answers, strict=True))


# --- the periodic check (Django) ---------------------------------------------------------------
@dataclass
class _Finding:
    instance: object
    probe: Probe  # the last probe of the round
    engine_state: str = ""
    engine_message: str = ""
    failures: int = 0  # failed probes in a row in this round


def _examine(instance, timeout: float, interval: float, threshold: int) -> _Finding:
    """Probe one instance (runs in a worker thread: no ORM). On a failure, ask its engine; when
    the engine says it runs, probe again every ``interval`` until it answers or the failures
    in a row reach ``threshold`` — a frozen runtime is judged within one round, not one beat
    period per probe."""
    from serving.backends import for_node
    from serving.backends.base import RUNNING

    started = time.monotonic()
    answer = probe(instance.address, timeout=timeout)
    finding = _Finding(instance, answer, failures=0 if answer.ok else 1)
    if answer.ok:
        return finding
    try:
        status = for_node(instance.node).inspect(instance.instance_id)
    except Exception as exc:  # an engine that does not answer: judge by the probe alone
        finding.engine_state, finding.engine_message = RUNNING, f"engine: {exc}"
    else:
        finding.engine_state, finding.engine_message = status.state, status.message
    if finding.engine_state != RUNNING:
        return finding
    while instance.probe_failures + finding.failures < threshold:
        time.sleep(max(0.0, started + interval - time.monotonic()))
        started = time.monotonic()
        finding.probe = probe(instance.address, timeout=timeout)
        if finding.probe.ok:
            finding.failures = 0
            break
        finding.failures += 1
    return finding


def _reason_dead(instance, finding: _Finding) -> str:
    from serving.backends.base import MISSING, PAUSED

    if finding.engine_state == PAUSED:
        what = finding.engine_message or "is paused (frozen)"
    elif finding.engine_state == MISSING:
        what = "disappeared from its engine"
    else:
        what = finding.engine_message or "exited"
    return (
        f"instance {instance.instance_id} {what}; its health probe failed ({finding.probe.detail})"
    )


def check_running(*, now=None) -> dict[str, str]:
    """One round over every running instance; returns ``{instance_id: what happened}`` for the
    ones that failed or were taken out (empty when all answered, or another round is running)."""
    from django.conf import settings
    from django.core.cache import cache
    from django.utils import timezone

    from serving.models import Instance

    interval = settings.EMS_HEALTH_PROBE_INTERVAL
    timeout = settings.EMS_HEALTH_PROBE_TIMEOUT_MS / 1000
    candidates = list(
        Instance.objects.filter(state=Instance.RUNNING, unhealthy_reason="")
        .exclude(address="")
        .select_related("node")
    )
    # one probe per instance at a time: a round still waiting on a frozen instance does not
    # hold back the next round's probes of the others, and is never counted twice
    hold = int((interval + timeout) * (settings.EMS_HEALTH_FAILURE_THRESHOLD + 1)) + 5
    mine = [i for i in candidates if cache.add(f"{LOCK_KEY}:{i.pk}", "1", timeout=hold)]
    if not mine:
        return {}
    round_start = now or timezone.now()
    try:
        with ThreadPoolExecutor(max_workers=min(32, len(mine))) as pool:
            findings = list(
                pool.map(
                    lambda i: _examine(i, timeout, interval, settings.EMS_HEALTH_FAILURE_THRESHOLD),
                    mine,
                )
            )
        return _apply(findings, now=round_start)
    finally:
        cache.delete_many([f"{LOCK_KEY}:{i.pk}" for i in mine])


def _apply(findings: list[_Finding], *, now) -> dict[str, str]:
    """``now``: when the round began (the first failed probe's time for a new failure)."""
    from django.conf import settings
    from django.db.models import F
    from django.utils import timezone

    from serving.backends.base import EXITED, MISSING, PAUSED
    from serving.models import Instance

    threshold = settings.EMS_HEALTH_FAILURE_THRESHOLD
    report: dict[str, str] = {}
    out: dict[int, list[tuple[Instance, str]]] = {}
    for finding in findings:
        instance = finding.instance
        if finding.failures == 0:
            if instance.probe_failures:
                Instance.objects.filter(pk=instance.pk).update(
                    probe_failures=0, probe_failing_since=None
                )
            continue
        if finding.engine_state in (EXITED, MISSING, PAUSED):
            reason = _reason_dead(instance, finding)
        else:
            since = instance.probe_failing_since or now
            Instance.objects.filter(pk=instance.pk, state=Instance.RUNNING).update(
                probe_failures=F("probe_failures") + finding.failures, probe_failing_since=since
            )
            count = instance.probe_failures + finding.failures
            report[instance.instance_id] = f"probe {count} failed: {finding.probe.detail}"
            if count < threshold:
                continue
            span = (timezone.now() - since).total_seconds()
            reason = (
                f"instance {instance.instance_id} did not answer its health probe for "
                f"{max(span, 0.0):.0f} s ({count} probes; last: {finding.probe.detail})"
            )
        won = Instance.objects.filter(
            pk=instance.pk, state=Instance.RUNNING, unhealthy_reason=""
        ).update(unhealthy_reason=reason[:4000])
        if won:
            report[instance.instance_id] = reason
            out.setdefault(instance.service_id, []).append((instance, reason))
    for service_pk, items in out.items():
        _take_out(service_pk, items)
    return report


def _take_out(service_pk: int, items) -> None:
    """Out of the routes at once (republish), say why, then let the reconciler replace them."""
    from serving import events, publish
    from serving.models import Service, ServiceEvent

    service = Service.objects.select_related("tenant").get(pk=service_pk)
    publish.after_pass(service, changed=True)
    for instance, reason in items:
        log.warning("%s: %s", service.service_id, reason)
        events.emit(
            service,
            UNHEALTHY,
            f"{reason}; taken out of the routes, to be replaced",
            level=ServiceEvent.WARNING,
            instance=instance,
        )
    from serving.tasks import reconcile_service

    try:
        reconcile_service.delay(service_pk)
    except Exception:  # the broker is down: beat's reconcile_all replaces it later
        log.exception("cannot queue the reconcile of %s", service.service_id)
