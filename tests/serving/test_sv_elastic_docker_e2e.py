"""Autoscaling and scale to zero on real Docker containers behind a real gateway (``-m e2e``).

A generated CPU-heavy model (one 1024-wide dense layer applied 48 times,
``tests/serving/heavy_model.py``) on instances of half a core (CPU limits enforced by Docker),
a bounded loopback load (3 callers, at most 12 requests per second each): the CPU trigger (30 %
of the limit) scales it out, the service returns to its minimum after a shortened window, no
request fails across the scale events; then it sleeps at zero and a request wakes it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving import publish, services
from serving.models import Service
from serving.services import InstanceSize, Scaling
from tests.gateway.conftest import GatewayProcess
from tests.serving import elastic_flow as flow
from tests.serving import heavy_model
from tests.serving.conftest import converge, make_version
from tests.serving.helpers import ROOT, open_tmp, remove_tree

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dense_model():
    out = open_tmp("ems-sv-dense-")
    subprocess.run(
        [sys.executable, "-m", "tests.serving.heavy_model", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    yield out / "dense" / "1"
    remove_tree(out)


def test_autoscaling_on_docker(owner, docker_group, dense_model, settings):
    settings.EMS_AUTOSCALE_STABILIZATION_SECONDS = 20
    settings.EMS_AUTOSCALE_IDLE_SECONDS = 10
    version = make_version(owner, dense_model, name="dense", runtime="tfserving")
    gateway = GatewayProcess(settings.EMS_GATEWAY_ROUTES, EMS_GATEWAY_WAKE_TIMEOUT="150")
    try:
        service = services.service_deploy(
            actor=owner.membership,
            version=version,
            group=docker_group,
            name="dense",
            size=InstanceSize(cpu_millicores=500, memory_mib=1024),
            scaling=Scaling(
                mode="auto", min=1, max=2, start=1, triggers=[{"metric": "cpu", "target": 30}]
            ),
        )
        converge(service, lambda s: s.status == Service.NORMAL, timeout=240, what="Normal")
        gateway.wait_generation(publish.store().generation(), timeout=10)
        body = heavy_model.body(8)
        status, _, answer = gateway.request(
            "POST", f"/{service.service_id}/v1/models/m:predict", body=body
        )
        assert status == 200 and len(answer["predictions"]) == 8, answer
        control = flow.Control(service)
        control.tick()
        numbers = flow.check_scale_out_and_in(
            control=control, port=gateway.port, body=body, rate=12, threads=3, timeout=300
        )
        print(f"\ndocker: {numbers}")
        assert numbers["failures"] == [], numbers["failures"][:5]
        assert "Deploying" not in numbers["statuses"]
        events = list(service.events.values_list("kind", "message"))
        assert any(k == "autoscaled" and "cpu" in m and "1 → 2" in m for k, m in events), events

        services.service_set_scaling(
            actor=owner.membership,
            service=service,
            scaling=Scaling(
                mode="auto", min=0, max=2, start=1, triggers=[{"metric": "cpu", "target": 30}]
            ),
        )
        answer = flow.check_scale_to_zero(
            control=control,
            gateway_request=lambda: flow.predict(gateway.port, service.service_id, body),
            timeout=300,
        )
        print(f"docker: request at zero answered in {answer['seconds']:.2f}s")
        assert answer["status"] == 200 and len(answer["body"]["predictions"]) == 8, answer
        assert {"sleeping", "woken"} <= set(service.events.values_list("kind", flat=True))
    finally:
        gateway.stop()
