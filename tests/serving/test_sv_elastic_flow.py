"""Autoscaling and scale to zero on real runtime processes behind a real gateway (default run).

The instance is sized 100 m CPU, so a bounded loopback load (a few dozen requests per second,
each a batch of 256 rows: ~2.5 ms of the runtime's CPU, ~75 % of the limit at 30 per second) is
CPU-heavy *for its limit*: the CPU trigger at 50 % fires without loading the shared machine. (A
one-row request costs the runtime server ~0.15 ms since its fast path: 30 of them are ~5 % of
the limit, which no longer trips the trigger.)
(The Docker e2e uses a generated dense SavedModel instead.) Windows are shortened by settings.
"""

from __future__ import annotations

from serving import publish, services
from serving.models import Service
from serving.services import InstanceSize, Scaling
from tests.gateway.conftest import PREDICT_BODY, GatewayProcess
from tests.serving import elastic_flow as flow
from tests.serving.conftest import converge, make_group

BATCH_BODY = {
    "instances": [
        {"sparseIndices": [1, 5, i % 100 + 7], "sparseValues": [1.0, 1.0, 0.5]} for i in range(256)
    ]
}


def test_autoscale_out_in_and_scale_to_zero_on_processes(
    owner, angel_version, serving_env, settings
):
    settings.EMS_AUTOSCALE_STABILIZATION_SECONDS = 15
    settings.EMS_AUTOSCALE_IDLE_SECONDS = 8
    group = make_group(tenant=owner.tenant, cpu=4000, memory=8192)
    gateway = GatewayProcess(settings.EMS_GATEWAY_ROUTES, EMS_GATEWAY_WAKE_TIMEOUT="120")
    try:
        service = services.service_deploy(
            actor=owner.membership,
            version=angel_version,
            group=group,
            name="elastic",
            size=InstanceSize(cpu_millicores=100, memory_mib=512),
            scaling=Scaling(
                mode="auto", min=1, max=3, start=1, triggers=[{"metric": "cpu", "target": 50}]
            ),
        )
        converge(service, lambda s: s.status == Service.NORMAL, what="Normal")
        gateway.wait_generation(publish.store().generation(), timeout=10)
        control = flow.Control(service)
        control.tick()
        numbers = flow.check_scale_out_and_in(
            control=control, port=gateway.port, body=BATCH_BODY, rate=30, threads=2
        )
        print(f"\nprocess backend: {numbers}")
        assert numbers["failures"] == [], numbers["failures"][:5]
        assert numbers["ok"] > 50
        assert "Deploying" not in numbers["statuses"]  # scaling out keeps a Normal service Normal
        events = list(service.events.values_list("kind", "message"))
        # "autoscaler: 1 → 3: cpu … → 11": match the head, not the proposal (11 holds "→ 1")
        out = [m for k, m in events if k == "autoscaled" and m.startswith("autoscaler: 1 → ")]
        assert out and "cpu" in out[0] and "target 50%" in out[0], events
        assert any(k == "autoscaled" and " → 1: " in m and "stable" in m for k, m in events)
        # scale-in waits for the window: never within 15 s of the scale-out's recommendation
        scaled = service.events.filter(kind="autoscaled").order_by("created_at")
        up = next(e for e in scaled if e.message.startswith("autoscaler: 1 → "))
        down = next(e for e in scaled if " → 1: " in e.message)
        assert (down.created_at - up.created_at).total_seconds() >= 15

        # scale to zero: min 0 with a QPS trigger; idle → 0 instances; a request wakes it
        services.service_set_scaling(
            actor=owner.membership,
            service=service,
            scaling=Scaling(
                mode="auto", min=0, max=2, start=1, triggers=[{"metric": "qps", "target": 50}]
            ),
        )
        answer = flow.check_scale_to_zero(
            control=control,
            gateway_request=lambda: flow.predict(gateway.port, service.service_id, PREDICT_BODY),
        )
        print(f"request at zero answered in {answer['seconds']:.2f}s ({answer['status']})")
        assert answer["status"] == 200, answer
        assert len(answer["body"]["predictions"]) == 1
        kinds = set(service.events.values_list("kind", flat=True))
        assert {"sleeping", "woken"} <= kinds
        doc = owner.api.get(f"/api/v1/services/{service.service_id}/metrics/?window=1h").json()
        replicas = [v for _, v in doc["series"]["replicas"]]
        assert max(replicas) >= 2 and 0 in replicas
        assert any(v > 0 for _, v in doc["series"]["rps"])
        assert doc["series"]["cpu_percent"] and doc["series"]["p99_ms"]
        assert {"autoscaled", "sleeping", "woken"} <= {e["kind"] for e in doc["events"]}
    finally:
        gateway.stop()
        from tests.serving.conftest import cleanup_group

        cleanup_group(group)
