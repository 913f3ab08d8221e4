"""Elastic control plane without runtime processes: the scaling policy API, the metrics API,
roll-up and retention, gateway counters → rates, the capacity cap, the wake path."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from gateway.app import LATENCY_BUCKETS
from serving import autoscaler, publish, services
from serving.metrics import series, traffic
from serving.metrics.models import MINUTE, RAW, MetricPoint
from serving.metrics.poller import ServiceMetrics
from serving.models import Service
from serving.services import InstanceSize, Scaling
from tests.serving.conftest import make_group

SIZE = InstanceSize(cpu_millicores=500, memory_mib=512)


def _auto(owner, version, group, name="auto", **kw):
    cpu60 = [{"metric": "cpu", "target": 60}]
    policy = {"mode": "auto", "min": 1, "max": 4, "start": 1, "triggers": cpu60}
    policy.update(kw)
    return services.service_deploy(
        actor=owner.membership, version=version, group=group, name=name, size=SIZE,
        scaling=Scaling(**policy),
    )  # fmt: skip


def test_scaling_policy_api(owner, make_sub_account, angel_version, dedicated):
    service = services.service_deploy(
        actor=owner.membership, version=angel_version, group=dedicated, name="m", size=SIZE
    )
    url = f"/api/v1/services/{service.service_id}/scaling/"
    body = {
        "scaling_mode": "auto",
        "min_replicas": 0,
        "max_replicas": 3,
        "triggers": [{"metric": "qps", "target": 500}, {"metric": "cpu", "target": 70}],
    }
    answer = owner.api.patch(url, body, format="json")
    assert answer.status_code == 200, answer.json()
    data = answer.json()
    assert data["scaling_mode"] == "auto" and data["replicas"] == 1
    assert data["autoscale"]["min"] == 0 and data["autoscale"]["triggers"][0] == {
        "metric": "qps",
        "target": 500,
    }
    route = publish.route_for(Service.objects.get(pk=service.pk))
    assert route["wake"] is True  # min 0: the gateways hold and wake
    audit = AuditEvent.objects.filter(action="ems:ScaleService").latest("id")
    assert audit.detail["autoscale"]["max"] == 3

    refused = owner.api.post(
        f"/api/v1/services/{service.service_id}/scale/", {"replicas": 2}, format="json"
    )
    assert refused.status_code == 400
    assert "scales automatically between 0 and 3" in str(refused.json())

    # only the range: triggers kept; the count is clamped into it at once
    raised = owner.api.patch(url, {"min_replicas": 2}, format="json").json()
    assert raised["replicas"] == 2 and len(raised["autoscale"]["triggers"]) == 2
    for bad, field in (
        ({"triggers": [{"metric": "cpu", "target": 150}]}, "triggers"),
        (
            {"triggers": [{"metric": "qps", "target": 5}, {"metric": "qps", "target": 6}]},
            "triggers",
        ),
        ({"triggers": [{"metric": "disk", "target": 5}]}, "triggers"),
        ({"min_replicas": 5, "max_replicas": 3}, "min"),
        ({"triggers": []}, "triggers"),
    ):
        answer = owner.api.patch(url, bad, format="json")
        assert answer.status_code == 400, (bad, answer.json())
        assert field in answer.json(), answer.json()

    back = owner.api.patch(url, {"scaling_mode": "manual", "replicas": 1}, format="json").json()
    assert back["scaling_mode"] == "manual" and back["autoscale"] == {} and back["replicas"] == 1
    reader = make_sub_account(name="reader", policies=("EMSReadOnlyAccess",))
    assert reader.api.patch(url, body, format="json").status_code == 403
    assert reader.api.get(f"/api/v1/services/{service.service_id}/metrics/").status_code == 200


def test_metrics_api_shape_windows_rollup_and_retention(owner, angel_version, dedicated, settings):
    service = _auto(owner, angel_version, dedicated)
    now = timezone.now().replace(microsecond=0)
    start = now - dt.timedelta(minutes=3)
    for i in range(36):  # 3 minutes of 5 s samples
        MetricPoint.objects.create(
            service=service, resolution=RAW, at=start + dt.timedelta(seconds=5 * i),
            replicas=1 + i // 12, rps=float(i), cpu_percent=50.0, memory_percent=20.0,
            error_rate=0.0, p50_ms=3.0, p99_ms=9.0,
        )  # fmt: skip
    from django.core.cache import cache

    cache.delete(series.MARK)
    rolled = series.rollup(now)
    assert rolled >= 3
    minute_rows = MetricPoint.objects.filter(service=service, resolution=MINUTE).order_by("at")
    assert minute_rows[0].cpu_percent == 50.0 and minute_rows[0].gpu_percent is None
    answer = owner.api.get(f"/api/v1/services/{service.service_id}/metrics/?window=1h")
    assert answer.status_code == 200
    doc = answer.json()
    assert set(doc) == {"series", "events"}
    assert set(doc["series"]) == {
        "replicas", "rps", "p50_ms", "p99_ms", "error_rate", "cpu_percent", "memory_percent",
        "gpu_percent",
    }  # fmt: skip
    assert len(doc["series"]["rps"]) == 36 and doc["series"]["gpu_percent"] == []
    t, v = doc["series"]["rps"][-1]
    assert v == 35.0 and abs(t - (start + dt.timedelta(seconds=175)).timestamp()) < 1
    assert any(e["kind"] == "scheduled" for e in doc["events"]) is False  # only scaling/health
    day = owner.api.get(f"/api/v1/services/{service.service_id}/metrics/?window=24h").json()
    assert 3 <= len(day["series"]["cpu_percent"]) <= 36
    bad = owner.api.get(f"/api/v1/services/{service.service_id}/metrics/?window=7d")
    assert bad.status_code == 400 and "window" in bad.json()

    # retention: raw rows older than an hour and minute rows older than the month go
    MetricPoint.objects.create(service=service, resolution=RAW, at=now - dt.timedelta(hours=2))
    MetricPoint.objects.create(service=service, resolution=MINUTE, at=now - dt.timedelta(days=31))
    assert series.expire(now) == 2
    assert not MetricPoint.objects.filter(at__lt=now - dt.timedelta(hours=1, minutes=1)).exists()


def test_gateway_counters_become_rates_and_percentiles(tmp_path):
    from django.core.cache import cache

    from gateway.routes import open_store

    store = open_store(f"file://{tmp_path}/routes.json")
    n = len(LATENCY_BUCKETS) + 1
    fast = LATENCY_BUCKETS.index(0.005)  # answers of 2.5-5 ms
    slow = LATENCY_BUCKETS.index(0.1)  # 50-100 ms

    def counters(count, errors, fast_n, slow_n):
        buckets = [0] * n
        buckets[fast], buckets[slow] = fast_n, slow_n
        inst = {"i-1": {"count": count, "by_status": {"200": count}, "buckets": buckets, "sum": 0}}
        return {"ems-aaaaaaaa": {"count": count, "sum": 0.0, "buckets": buckets,
                                 "by_status": {"200": count - errors, "503": errors},
                                 "instances": inst}}  # fmt: skip

    for gw in ("gw-a", "gw-b"):
        cache.delete(traffic.CACHE_PREFIX + gw)
    store.report("gw-a", 1, {}, counters=counters(100, 0, 100, 0))
    store.report("gw-b", 1, {}, counters=counters(10, 0, 10, 0))
    assert traffic.collect(store).seen is False  # one report each: no rate yet
    import time

    time.sleep(1.1)
    store.report("gw-a", 1, {}, counters=counters(200, 2, 190, 10))
    store.report("gw-b", 1, {}, counters=counters(20, 0, 20, 0))
    seen = traffic.collect(store)
    t = seen.service("ems-aaaaaaaa")
    assert t.requests == 110 and t.errors == 2
    assert 60 < t.rps < 120  # 110 requests over ~1.1 s
    assert t.error_rate == pytest.approx(2 / 110)
    assert 2.5 <= t.quantile_ms(0.5) <= 5.0 and 50 <= t.quantile_ms(0.99) <= 100
    assert seen.instances["i-1"].requests == 110
    assert seen.service("ems-bbbbbbbb").rps == 0.0  # seen gateways, no traffic: zero
    # a restarted gateway (counters went down) counts from zero, never negative
    time.sleep(1.1)
    store.report("gw-a", 1, {}, counters=counters(5, 0, 5, 0))
    assert traffic.collect(store).service("ems-aaaaaaaa").requests >= 0


def test_capacity_cap_and_the_system_path(owner, angel_version, serving_env):
    group = make_group(tenant=owner.tenant, cpu=1000, memory=8192)  # room for 2 × 500 m
    service = _auto(owner, angel_version, group)
    service.instances.update(state="running")  # as if the reconciler had started it
    busy = ServiceMetrics(ready=1, cpu_percent=400.0, memory_percent=10, gpu_percent=None, rps=5.0)
    desired = autoscaler.autoscale_service(service, busy, now=timezone.now())
    service.refresh_from_db()
    assert desired == service.replicas == 2
    kinds = list(service.events.values_list("kind", "message"))
    capped = [m for k, m in kinds if k == "capped"]
    assert capped and "wanted 4 instance(s), capped at 2 by the free capacity" in capped[0]
    scaled = [m for k, m in kinds if k == "autoscaled"]
    assert scaled and "1 → 2" in scaled[0] and "cpu 400% vs target 60%" in scaled[0]
    audit = AuditEvent.objects.filter(action="ems:ScaleService").latest("id")
    assert audit.actor_label == "system" and audit.actor is None
    assert audit.detail["by"] == "autoscaler" and audit.detail["cpu"]["value"] == 400.0
    assert service.instances.filter(state="pending").count() == 1  # its claim is taken
    page = owner.client.get(f"/services/{service.service_id}/").content.decode()
    assert "last decision" in page and "cpu 400% vs target 60%" in page
    again = autoscaler.autoscale_service(service, busy, now=timezone.now())
    assert again == 2 and service.events.filter(kind="capped").count() == 1  # said once


def test_scale_to_zero_and_the_wake_request(owner, angel_version, dedicated, settings):
    qps5 = [{"metric": "qps", "target": 5}]
    service = _auto(owner, angel_version, dedicated, min=0, max=2, triggers=qps5)
    settings.EMS_AUTOSCALE_IDLE_SECONDS = 10
    later = timezone.now() + dt.timedelta(seconds=60)
    idle = ServiceMetrics(ready=1, cpu_percent=1.0, memory_percent=1.0, gpu_percent=None, rps=0.0)
    assert autoscaler.autoscale_service(service, idle, now=later) == 0
    service.refresh_from_db()
    assert service.replicas == 0 and "sleeping" in service.message
    assert service.events.filter(kind="sleeping").exists()
    store = publish.store()
    store.wake(service.service_id)
    assert autoscaler.process_wakes(store) == [service.service_id]
    service.refresh_from_db()
    assert service.replicas == 1 and service.message == ""
    assert store.wake_requests() == {}
    assert service.events.filter(kind="woken").exists()
    store.wake(service.service_id)  # awake already: the request is simply dropped
    assert autoscaler.process_wakes(store) == [] and store.wake_requests() == {}


def test_service_page_charts_and_scaling_form(owner, angel_version, dedicated):
    from django.contrib.staticfiles import finders

    service = _auto(owner, angel_version, dedicated)
    page = owner.client.get(f"/services/{service.service_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="monitoring"' in html
    assert f"/api/v1/services/{service.service_id}/metrics/" in html
    assert "uPlot.iife.min.js" in html and "monitoring.js" in html and "cdn" not in html.lower()
    assert finders.find("serving/vendor/uplot/uPlot.iife.min.js")  # vendored, served by us
    assert finders.find("serving/monitoring.js")
    assert 'name="scale"' not in html  # an automatic service has no manual scale form
    posted = owner.client.post(
        f"/services/{service.service_id}/scaling/",
        {"scaling_mode": "auto", "min_replicas": 0, "max_replicas": 5, "trigger_qps": 20},
    )
    assert posted.status_code == 302
    service.refresh_from_db()
    assert service.autoscale["min"] == 0 and service.autoscale["max"] == 5
    assert service.autoscale["triggers"] == [{"metric": "qps", "target": 20}]
    bad = owner.client.post(
        f"/services/{service.service_id}/scaling/",
        {"scaling_mode": "auto", "min_replicas": 0, "max_replicas": 5},
        follow=True,
    )
    assert "at least one trigger" in bad.content.decode()


def test_a_sub_accounts_quota_limit_caps_the_autoscaler(owner, make_sub_account, angel_version):
    """Billing's quota limit of the sub-account that deployed is the autoscaler's cap too, and
    the capped event names it."""
    from billing.models import QuotaLimit

    engineer = make_sub_account(name="quota")
    public = make_group(cpu=16000, memory=65536)  # tenant None: a public group
    public.region = angel_version.config.region
    public.save(update_fields=["region"])
    cpu60 = [{"metric": "cpu", "target": 60}]
    service = services.service_deploy(
        actor=engineer.membership, version=angel_version, group=public, name="q",
        size=InstanceSize(quota_type="cpu", quota_count=1),
        scaling=Scaling(mode="auto", min=1, max=6, start=1, triggers=cpu60),
    )  # fmt: skip
    QuotaLimit.objects.create(tenant=owner.tenant, member=engineer.membership, max_quota_count=2)
    service.instances.update(state="running")
    busy = ServiceMetrics(ready=1, cpu_percent=400.0, memory_percent=10, gpu_percent=None, rps=5.0)
    assert autoscaler.autoscale_service(service, busy, now=timezone.now()) == 2
    capped = list(service.events.filter(kind="capped").values_list("message", flat=True))
    assert capped and "quota limit of quota (2 units)" in capped[0], capped


def test_the_periodic_tasks_run_and_are_scheduled(owner, angel_version, dedicated):
    from django_celery_beat.models import PeriodicTask

    from serving.tasks import poll_metrics, wake_services

    service = _auto(owner, angel_version, dedicated)
    done = poll_metrics()  # no running instance yet: a pass that writes the service's sample
    assert done["instances"] == 0 and done[service.service_id] == 1
    assert MetricPoint.objects.filter(service=service, instance_id="").exists()
    assert wake_services() == []
    from serving import bootstrap

    bootstrap.run(demo=False, log=lambda line: None)
    tasks = dict(PeriodicTask.objects.values_list("task", "interval__every"))
    assert tasks["serving.poll_metrics"] == 5 and tasks["serving.wake_services"] == 1
