"""The batch-job end to end of ``test_sv_jobs_process.py`` on real Docker containers (``-m e2e``):
1,000 instances through the example classifier, a worker killed with SIGKILL mid-job, every line
exactly once and equal to the online service's answer, bad lines reported, the bill."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.conftest import service_missing
from tests.serving.test_sv_jobs_process import run_killed_worker_flow

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_job_on_docker_survives_a_killed_worker_and_is_billed(
    owner, serving_env, settings, monkeypatch, docker_client, images
):
    if connection.vendor != "postgresql":
        service_missing("worker processes need the test database on PostgreSQL")
    run_killed_worker_flow(owner, serving_env, settings, monkeypatch, backend="docker")
