"""The gateway's half of elasticity (no Django): counters in its reports, and requests to a
sleeping service held, a wake request written, answered once an instance is routed — or 503
with Retry-After past the bound."""

from __future__ import annotations

import threading
import time

from gateway.routes import make_route, open_store


def _wake_route(sid, instances=()):
    return make_route(service_id=sid, tenant_id=1, auth=False, instances=instances, wake=True)


def test_reports_carry_counters_per_service_and_instance(store_url, start_gateway, start_echo):
    store = open_store(store_url)
    url = start_echo("a")
    store.publish(
        make_route(
            service_id="ems-counters",
            tenant_id=1,
            auth=False,
            instances=[{"id": "i-a", "url": url, "state": "healthy"}],
        )
    )
    gw = start_gateway(store_url)
    gw.wait_generation(store.generation())
    for _ in range(5):
        assert gw.request("POST", "/ems-counters/v1/models/m:predict", body={})[0] == 200
    assert gw.request("POST", "/ems-nothere/v1/models/m:predict", body={})[0] == 404
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reports = list(store.gateways().values())
        counters = reports[0].get("counters", {}).get("ems-counters") if reports else None
        if counters and counters["count"] == 5:
            break
        time.sleep(0.1)
    assert counters["by_status"] == {"200": 5}
    assert counters["instances"]["i-a"]["count"] == 5
    assert sum(counters["buckets"]) == 5 and counters["sum"] > 0
    store.close()


def test_sleeping_service_is_held_woken_and_answered(store_url, start_gateway, start_echo):
    store = open_store(store_url)
    sid = "ems-sleeping"
    store.publish(_wake_route(sid))
    gw = start_gateway(store_url, EMS_GATEWAY_WAKE_TIMEOUT="30")
    gw.wait_generation(store.generation())
    answer = {}

    def call():
        began = time.monotonic()
        answer["result"] = gw.request("POST", f"/{sid}/v1/models/m:predict", body={"x": 1})
        answer["seconds"] = time.monotonic() - began

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while sid not in store.wake_requests():  # the gateway asked the control plane
        assert time.monotonic() < deadline, "no wake request written"
        time.sleep(0.05)
    at = store.wake_requests()[sid]
    time.sleep(0.5)
    assert caller.is_alive()  # still held: no 503 while the service wakes
    metrics = gw.request("GET", "/metrics", port=gw.admin_port)[2]
    assert "ems_gateway_wake_held 1" in metrics
    url = start_echo("woken")
    store.publish(_wake_route(sid, [{"id": "i-1", "url": url, "state": "healthy"}]))
    caller.join(10)
    status, _, body = answer["result"]
    assert status == 200 and body["name"] == "woken" and body["body_len"] == len(b'{"x": 1}')
    assert answer["seconds"] >= 0.5
    store.clear_wake(sid, at)
    assert sid not in store.wake_requests() or store.wake_requests()[sid] > at
    store.close()


def test_hold_is_bounded_then_503_with_retry_after(store_url, start_gateway):
    store = open_store(store_url)
    store.publish(_wake_route("ems-neverup"))
    gw = start_gateway(store_url, EMS_GATEWAY_WAKE_TIMEOUT="1")
    gw.wait_generation(store.generation())
    began = time.monotonic()
    status, headers, body = gw.request("POST", "/ems-neverup/v1/models/m:predict", body={})
    assert status == 503 and headers.get("retry-after")
    assert "waking up" in body["error"]
    assert 0.9 <= time.monotonic() - began < 10
    # a route without the wake flag is answered 503 at once, as before
    store.publish(make_route(service_id="ems-plain", tenant_id=1, auth=False))
    gw.wait_generation(store.generation())
    began = time.monotonic()
    assert gw.request("POST", "/ems-plain/v1/models/m:predict", body={})[0] == 503
    assert time.monotonic() - began < 0.9
    store.close()
