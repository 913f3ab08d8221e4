"""Batch jobs end to end on the process backend (real runtime processes, a real Celery worker on
PostgreSQL): 1,000 instances in three files (.jsonl and .json) through the example classifier;
the worker is killed with SIGKILL after writing a part and before counting it, a new worker
finishes the job with every line exactly once; the outputs are line-aligned and equal to the
online service's answers; bad lines are reported on their own lines; the bill shows the job.
A cancelled job keeps what it finished."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from celery.app.task import Task
from django.db import connection
from django.utils import timezone

from billing import bills, metering
from serving import services as serving
from serving.jobs import runner
from serving.jobs import services as jobs
from serving.jobs.models import Job, JobFile, JobPart
from serving.models import Instance, Service
from tests.billing.conftest import set_price
from tests.conftest import service_missing
from tests.serving import jobs_flow as flow
from tests.serving.conftest import cleanup_group, converge, make_group, make_version, status_is

SIZE = serving.InstanceSize(quota_type="cpu", quota_count=1)


def _send_to(monkeypatch, settings):
    """Tasks the test process queues (on commit) go to the test's own broker, which the worker
    subprocess reads (the worker's own follow-ups go there too)."""
    from celery import Celery

    from tests.serving.test_sv_worker_kill import _broker

    broker, options = _broker(settings)
    probe = Celery("jobs-test", broker=broker)
    probe.conf.broker_transport = "portal.filebroker:Transport"
    probe.conf.broker_transport_options = options
    probe.conf.task_serializer = "json"

    def apply_async(self, args=None, kwargs=None, countdown=None, **options):
        return probe.send_task(self.name, args=args, kwargs=kwargs, countdown=countdown)

    monkeypatch.setattr(Task, "apply_async", apply_async)


def _job_env(settings) -> dict[str, str]:
    return {
        "EMS_JOB_LEASE_SECONDS": str(settings.EMS_JOB_LEASE_SECONDS),
        "EMS_JOB_PART_BATCHES": str(settings.EMS_JOB_PART_BATCHES),
        "EMS_JOB_INFLIGHT": "2",
    }


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_job_survives_a_killed_worker_and_is_billed(owner, serving_env, settings, monkeypatch):
    if connection.vendor != "postgresql":
        service_missing("worker processes need the test database on PostgreSQL")
    run_killed_worker_flow(owner, serving_env, settings, monkeypatch, backend="process")


def run_killed_worker_flow(owner, serving_env, settings, monkeypatch, *, backend: str):
    from tests.serving.test_sv_worker_kill import _marker, _wait, worker

    settings.EMS_JOB_LEASE_SECONDS = 3
    settings.EMS_JOB_PART_BATCHES = 2
    settings.EMS_METERING_WINDOW_SECONDS = 10
    settings.EMS_METERING_LAG_SECONDS = 0
    set_price("cpu", "3600.000000", datetime(2000, 1, 1, tzinfo=UTC))  # 1 per unit-second
    group = make_group(tenant=None, backend=backend, cpu=4000, memory=8192)
    version = make_version(owner, flow.EXAMPLE_MODEL, name="classifier")
    source, target, lines = flow.seed_inputs(owner.tenant)
    try:
        # the online service of the same version: the reference answers, line by line
        online = serving.service_deploy(
            actor=owner.membership, version=version, group=group, name="online", size=SIZE
        )
        converge(online, status_is(Service.NORMAL), what="online Normal", timeout=180)
        address = online.instances.get(state=Instance.RUNNING).address
        answers = flow.online_answers(address, lines)
        serving.service_delete(actor=owner.membership, service=online)
        converge(online, lambda s: not s.instances.filter(state__in=Instance.LIVE).exists())

        _send_to(monkeypatch, settings)
        job = jobs.job_create(
            actor=owner.membership,
            version=version,
            group=group,
            name="nightly",
            size=SIZE,
            input_url=source,
            output_url=target,
            workers=2,
            batch_size=32,
            max_failed=5,
        )
        marker = serving_env / "job-paused-at"
        fault = {"EMS_FAULT": "job_part_written", "EMS_FAULT_MODE": "pause"}
        fault.update(EMS_FAULT_MARKER=str(marker), EMS_FAULT_SKIP="4", **_job_env(settings))
        first_log = serving_env / "job-worker-1.log"
        with worker(settings, first_log, **fault) as first:
            pid, point = _wait(lambda: _marker(marker), "a part to pause", first, first_log, 240)
            assert point == "job_part_written"
            os.kill(int(pid), signal.SIGKILL)
            _wait(lambda: first.poll() is not None, "the worker to die", first, first_log, 30)
        job.refresh_from_db()
        assert job.status == Job.RUNNING and job.done == 4 * 64  # four parts counted, ...
        held = JobPart.objects.get(job=job, status=JobPart.RUNNING)  # ... the fifth written
        assert held.attempts == 1

        second_log = serving_env / "job-worker-2.log"
        with worker(settings, second_log, **_job_env(settings)) as second:

            def ended():
                runner.sweep()  # what beat does every EMS_JOB_SWEEP_SECONDS
                job.refresh_from_db()
                return job.is_ended

            _wait(ended, "the job to end", second, second_log, 240)
            assert job.status == Job.SUCCEEDED, (job.status, job.message)

            def stopped():
                return not Instance.objects.filter(
                    service=job.service, state__in=Instance.LIVE
                ).exists()

            _wait(stopped, "the job's instances to stop", second, second_log, 120)

        # every line exactly once: counts, parts, and the files themselves
        assert (job.total, job.done, job.failed) == (1000, 1000, flow.bad_count())
        assert JobPart.objects.get(pk=held.pk).attempts == 2
        assert not JobPart.objects.filter(job=job).exclude(status=JobPart.DONE).exists()
        assert set(JobFile.objects.filter(job=job).values_list("state", flat=True)) == {
            JobFile.ASSEMBLED
        }
        errors = flow.check_outputs(flow.read_outputs(owner.tenant), answers)
        assert errors == flow.bad_count()
        assert {(e["file"], e["line"]) for e in job.errors} == {
            ("in/" + name, n) for name, n in [*flow.BAD, *flow.WRONG_SHAPE]
        }
        assert job.progress()["rate"] > 0
        # the part objects were removed after assembly
        from tests.models_repo.conftest import tenant_store

        left = list(tenant_store(owner.tenant).walk(f"data-{owner.tenant.app_id}", "out/.parts/"))
        assert left == []

        # the bill: the job's instances, metered like a service's, on a line naming the job
        metering.run(now=timezone.now() + timedelta(seconds=30))
        view = bills.bill_view(owner.tenant.pk, bills.month_start(timezone.now()).date())
        line = next(x for x in view.lines if x["service_id"] == job.job_id)
        assert line["description"] == f"job nightly ({job.job_id}): usage"
        seconds = sum(
            int(
                (
                    i.stopped_at.replace(microsecond=0) - i.started_at.replace(microsecond=0)
                ).total_seconds()
            )
            for i in Instance.objects.filter(service=job.service).exclude(started_at=None)
        )
        assert line["seconds"] == seconds > 0
        assert line["amount"] == Decimal(seconds)
    finally:
        cleanup_group(group)
        if backend == "docker":
            import docker

            client = docker.from_env()
            for node in group.nodes.all():
                for network in client.networks.list(names=[f"ems-runtime-{node.name}"]):
                    network.remove()


@pytest.mark.django_db
def test_cancel_keeps_finished_files_and_parts(owner, serving_env, settings, monkeypatch):
    """In this process (the test plays the worker): 8 parts run, then cancel — the instances
    stop, the first file (7 parts) is assembled, the part done of the second stays readable,
    the rest is cancelled and never runs."""
    settings.EMS_JOB_PART_BATCHES = 2
    queued = []
    monkeypatch.setattr("serving.jobs.tasks.job_run_part.delay", queued.append)
    group = make_group(tenant=owner.tenant, cpu=4000, memory=8192)
    version = make_version(owner, flow.EXAMPLE_MODEL, name="classifier")
    source, target, _ = flow.seed_inputs(owner.tenant)
    try:
        job = jobs.job_create(
            actor=owner.membership,
            version=version,
            group=group,
            name="to-cancel",
            size=serving.InstanceSize(cpu_millicores=500, memory_mib=512),
            input_url=source,
            output_url=target,
            batch_size=32,
            max_failed=10,
        )
        assert runner.dispatch(job.pk) == runner.WAITING
        converge(job.service, status_is(Service.NORMAL), what="job instances", timeout=120)
        assert runner.dispatch(job.pk) == runner.QUEUED
        assert len(queued) == 7 + 4 + 6  # 400, 250 and 350 lines in parts of 64
        assert [runner.run_part(pk) for pk in queued[:8]] == [runner.DONE] * 8
        job = jobs.job_cancel(actor=owner.membership, job=job)
        assert job.status == Job.CANCELLED
        assert [runner.run_part(pk) for pk in queued[8:]] == [runner.SKIPPED] * 9
        runner.dispatch(job.pk)
        converge(job.service, lambda s: not s.instances.filter(state__in=Instance.LIVE).exists())
        job.refresh_from_db()
        assert (job.done, job.total) == (400 + 64, 1000)
        states = dict(JobFile.objects.filter(job=job).values_list("input_key", "state"))
        assert states == {
            "in/a.jsonl": JobFile.ASSEMBLED,
            "in/c.json": JobFile.CANCELLED,
            "in/sub/b.jsonl": JobFile.CANCELLED,
        }
        from tests.models_repo.conftest import tenant_store

        store, bucket = tenant_store(owner.tenant), f"data-{owner.tenant.app_id}"
        with store.open(bucket, "out/a.jsonl.out") as stream:
            assert len(stream.read().decode().splitlines()) == 400
        kept = [o.key for o in store.walk(bucket, "out/.parts/")]
        assert kept == [f"out/.parts/{job.job_id}/00001/000000.jsonl"]
        assert not store.is_file(bucket, "out/c.json.out")
        assert set(JobPart.objects.filter(job=job).values_list("status", flat=True)) == {
            JobPart.DONE,
            JobPart.CANCELLED,
        }
        with pytest.raises(Exception, match="already ended"):
            jobs.job_cancel(actor=owner.membership, job=job)
    finally:
        cleanup_group(group)
