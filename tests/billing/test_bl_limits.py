"""Budgets, sub-account quota limits and dedicated-group purchases acting on deploy, scale and
resume (refused with the limit and by how much), alerts by event and email exactly once, the
stop at 100%, and a purchase's notice, expiry and stop after the grace period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import AuditEvent
from billing import limits, metering, services
from billing.models import BillingEvent, BudgetAlert, QuotaLimit
from serving import services as serving
from serving.models import Service, ServiceEvent
from serving.services import InstanceSize, Scaling
from tests.billing.conftest import make_instance, make_service, start_meter
from tests.serving.conftest import make_group

CPU2 = InstanceSize(quota_type="cpu", quota_count=2)


@pytest.fixture
def spent(owner, public_group, prices, settings):
    """0.48 CNY spent this month: 2 CPU units for 2 hours at 0.12."""
    settings.EMS_METERING_LAG_SECONDS = 0
    now = timezone.now().replace(microsecond=0)
    start = max(
        now - timedelta(hours=2), metering.floor_window(now.replace(day=1, hour=0, minute=0))
    )
    service = make_service(owner.membership, public_group, quota_count=2, name="old")
    make_instance(service, started_at=start, stopped_at=start + timedelta(hours=2))
    start_meter(metering.floor_window(start))
    metering.run(now=now)
    return service


def test_a_used_up_budget_refuses_a_deploy_with_the_numbers(
    owner, spent, angel_version, public_group
):
    services.budget_set(actor=owner.membership, monthly_amount="0.40", stop_at_limit=True)
    res = owner.api.post(
        "/api/v1/services/",
        {
            "name": "new",
            "version": angel_version.pk,
            "resource_group": public_group.pk,
            "quota_type": "cpu",
            "quota_count": 1,
        },
        format="json",
    )
    assert res.status_code == 409, res.content
    assert res.json()["detail"] == (
        "the monthly budget of 0.40 CNY is used up: 0.48 CNY spent this month, 0.08 over; "
        "raise the budget or turn its stop off"
    )
    assert not Service.objects.filter(name="new").exists()
    # without the stop, a budget only alerts
    services.budget_set(actor=owner.membership, monthly_amount="0.40", stop_at_limit=False)
    serving.service_deploy(
        actor=owner.membership, version=angel_version, group=public_group, name="new", size=CPU2
    )


def test_budget_alerts_once_with_email_and_stop_at_100(
    owner, spent, angel_version, public_group, django_capture_on_commit_callbacks
):
    running = serving.service_deploy(
        actor=owner.membership, version=angel_version, group=public_group, name="run", size=CPU2
    )
    services.budget_set(
        actor=owner.membership,
        monthly_amount="0.80",
        thresholds=[50, 80, 100],
        email="ops@example.com",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.budget_check(owner.tenant.pk) == [50]
        assert services.budget_check(owner.tenant.pk) == []
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com"]
    assert "50% of the monthly budget reached: 0.48 of 0.80 CNY" in mail.outbox[0].body
    assert BillingEvent.objects.filter(kind="budget-alert").count() == 1
    services.budget_set(
        actor=owner.membership, monthly_amount="0.48", thresholds=[50, 80, 100], stop_at_limit=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.budget_check(owner.tenant.pk) == [80, 100]
    assert BudgetAlert.objects.count() == 3 and len(mail.outbox) == 3
    running.refresh_from_db()
    assert running.desired == Service.STOP
    audit = AuditEvent.objects.get(action="billing:StopAtBudget")
    assert audit.actor is None and audit.actor_label == "system"
    assert audit.detail["stopped_services"] == 2  # "run" and the fixture's "old"
    assert AuditEvent.objects.filter(
        action="ems:StopService", actor__isnull=True, detail__reason__startswith="budget stop"
    ).exists()


def test_sub_account_quota_limit_refuses_scale_by_how_much(
    owner, sub_account, angel_version, public_group, prices
):
    QuotaLimit.objects.create(tenant=owner.tenant, member=sub_account.membership, max_quota_count=4)
    service = serving.service_deploy(
        actor=sub_account.membership,
        version=angel_version,
        group=public_group,
        name="capped",
        size=CPU2,
        scaling=Scaling(replicas=2),
    )
    with pytest.raises(limits.LimitExceeded) as refused:
        serving.service_scale(actor=sub_account.membership, service=service, replicas=3)
    assert refused.value.message == (
        f"the sub-account {sub_account.membership.name} may hold 4 quota units: it holds 4 and "
        "this needs 2 more (2 over the limit)"
    )
    res = sub_account.api.post(
        f"/api/v1/services/{service.service_id}/scale/", {"replicas": 3}, format="json"
    )
    assert res.status_code == 409 and "2 over the limit" in res.json()["detail"]
    assert limits.replicas_allowed(service, 5) == (
        2,
        f"capped at 2 by the quota limit of {sub_account.membership.name} (4 units): "
        "3 replica(s) short",
    )
    # the main account has no limit
    other = serving.service_deploy(
        actor=owner.membership, version=angel_version, group=public_group, name="free", size=CPU2
    )
    serving.service_scale(actor=owner.membership, service=other, replicas=4)


def test_an_expired_purchase_refuses_deploys_then_stops_services(
    owner, angel_version, serving_env, settings
):
    settings.EMS_BILLING_EXPIRY_GRACE_SECONDS = 3600
    group = make_group(tenant=owner.tenant)
    now = timezone.now().replace(microsecond=0)
    purchase = services.purchase_create(
        operator=None,
        group=group,
        months=1,
        price="300.00",
        starts_at=now - timedelta(days=27),
        cores_per_node=4,
        memory_gib_per_node=8,
    )
    size = InstanceSize(cpu_millicores=500, memory_mib=512)
    running = serving.service_deploy(
        actor=owner.membership, version=angel_version, group=group, name="ded", size=size
    )
    # a notice beforehand (once)
    assert services.purchases_check(now)["notices"] == 1
    assert services.purchases_check(now)["notices"] == 0
    assert ServiceEvent.objects.filter(service=running, kind="billing").count() == 1
    assert owner.client.get("/billing/").content.decode().count("ends on") >= 1
    # expiry: deploys refused at once, the service keeps running during the grace period
    after = purchase.ends_at + timedelta(minutes=1)
    assert services.purchases_check(after)["expired"] == 1
    with pytest.raises(limits.LimitExceeded, match=r"ended on .*renew it"):
        with_time(after, serving.service_deploy, actor=owner.membership, version=angel_version,
                  group=group, name="ded2", size=size)  # fmt: skip
    running.refresh_from_db()
    assert running.desired == Service.RUN
    # after the grace period: stopped by the system, audited, with an event
    done = services.purchases_check(purchase.ends_at + timedelta(hours=1, minutes=1))
    assert done["stopped"] == 1
    running.refresh_from_db()
    assert running.desired == Service.STOP
    assert BillingEvent.objects.filter(kind="services-stopped").exists()
    # renewal lifts the refusal
    services.purchase_renew(actor=owner.membership, group=group, months=1)
    serving.service_resume(actor=owner.membership, service=running)


def with_time(moment, fn, **kwargs):
    """Run ``fn`` with ``timezone.now()`` at ``moment`` (purchases are judged against now)."""
    from unittest import mock

    with mock.patch("billing.limits.timezone.now", return_value=moment):
        return fn(**kwargs)


def test_auto_renew_makes_the_next_period_and_its_bill_line(owner, catalogue):
    group = make_group(tenant=owner.tenant)
    now = timezone.now().replace(microsecond=0)
    purchase = services.purchase_create(
        operator=None,
        group=group,
        months=3,
        price="900.00",
        starts_at=now - timedelta(days=80),
        cores_per_node=4,
        memory_gib_per_node=8,
        auto_renew=True,
    )
    done = services.purchases_check(purchase.ends_at - timedelta(minutes=30))
    assert done["renewed"] == 1 and done["expired"] == 0
    renewal = purchase.__class__.objects.get(renewal_of=purchase)
    assert renewal.starts_at == purchase.ends_at and renewal.price == purchase.price
    assert services.purchases_check(purchase.ends_at + timedelta(minutes=5))["expired"] == 0
    assert limits.current_purchase(group, purchase.ends_at + timedelta(days=1)) == renewal
