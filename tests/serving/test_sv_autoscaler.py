"""The autoscaler's decision table (``serving.autoscaler.decide``, pure: no database)."""

from __future__ import annotations

import random

import pytest

from serving.autoscaler import Observation, Policy, decide, recommend

CPU60 = Policy(min=1, max=10, triggers=(("cpu", 60),))
WINDOW = 300.0


def obs(current, cpu=None, *, ready=None, starting=0, **values):
    vals = {"cpu": cpu, **values}
    return Observation(current=current, ready=current if ready is None else ready,
                       starting=starting, values=vals)  # fmt: skip


def run(policy, observation, *, now=1000.0, history=None, **kw):
    return decide(policy, observation, now=now, history=history or [], stabilization=WINDOW, **kw)


@pytest.mark.parametrize(
    ("current", "cpu", "want"),
    [
        (1, 120, 2),  # ceil(1 × 120/60)
        (2, 90, 3),  # ceil(2 × 1.5)
        (3, 200, 10),  # ceil(3 × 3.33) = 10 (the max and the step cap of 3 + 4 = 7 → 7)
        (4, 65, 4),  # 65/60 = 1.083: within the 10 % tolerance
        (4, 55, 4),  # 0.917: within the tolerance
        (2, 67, 3),  # 1.117: outside → ceil(2.23) = 3
    ],
)
def test_scale_out_is_prompt_and_follows_hpa(current, cpu, want):
    d = run(CPU60, obs(current, cpu))
    expected = min(want, max(2 * current, current + 4))
    assert d.desired == expected, d.reason
    assert d.numbers["cpu"]["target"] == 60


def test_scale_out_rate_limited_and_waits_for_starting_instances():
    d = run(CPU60, obs(1, 600))  # wants 10, one step allows max(2, 5) = 5
    assert (d.recommendation, d.desired) == (10, 5)
    assert "rate limit" in d.reason
    d = run(CPU60, obs(5, 300, ready=2, starting=3))
    assert d.desired == 5 and "starting" in d.reason


def test_scale_in_only_after_the_stabilization_window():
    history = []
    now = 0.0
    # busy for a while at 4 instances
    for _ in range(10):
        d = run(CPU60, obs(4, 60), now=now, history=history)
        history = d.history
        now += 5
    # load stops: the recommendation is 1, but the count holds for the window
    quiet_from = now
    while now < quiet_from + WINDOW - 5:
        d = run(CPU60, obs(4, 5), now=now, history=history)
        history = d.history
        assert d.desired == 4, (now - quiet_from, d.reason)
        now += 5
    for _ in range(3):
        d = run(CPU60, obs(4, 5), now=now, history=history)
        history = d.history
        now += 5
    assert d.desired == 1, d.reason
    assert "stable" in d.reason


def test_no_history_counts_as_current_for_the_window():
    d = run(CPU60, obs(3, 1), now=10.0)  # just deployed, idle: do not drop at once
    assert d.desired == 3


def test_no_flapping_on_noisy_input_around_the_target():
    rng = random.Random(7)
    history, now, current, changes = [], 0.0, 3, 0
    for _ in range(400):  # 2000 s of ±8 % noise around the target
        d = run(CPU60, obs(current, 60 * (1 + rng.uniform(-0.08, 0.08))), now=now, history=history)
        history = d.history
        if d.desired != current:
            changes += 1
            current = d.desired
        now += 5
    assert changes == 0


def test_bounds():
    policy = Policy(min=2, max=4, triggers=(("cpu", 50),))
    assert run(policy, obs(2, 500)).desired == 4  # clamped to max
    d = run(policy, obs(3, 1), history=[[0.0, 2]], now=WINDOW + 10)
    assert d.desired == 2  # never below min
    assert run(policy, obs(6, 50)).desired == 4  # above a lowered max: down at once
    assert run(policy, obs(1, 50)).desired == 2  # below a raised min: up at once


def test_several_triggers_take_the_maximum():
    policy = Policy(min=1, max=10, triggers=(("cpu", 50), ("memory", 50), ("gpu", 50)))
    d = run(policy, obs(2, 50, memory=150, gpu=None))
    assert d.desired == 6  # memory: ceil(2 × 3); cpu within tolerance; gpu not available
    assert d.numbers["gpu"]["value"] is None
    assert d.numbers["memory"]["proposal"] == 6


def test_qps_trigger_is_per_instance():
    policy = Policy(min=1, max=10, triggers=(("qps", 10),))
    d = run(policy, obs(2, None, qps=60.0))  # 30 req/s per instance vs 10
    assert d.numbers["qps"]["value"] == 30.0
    assert d.desired == 6
    assert recommend(policy, obs(2, None, qps=21.0))[0] == 2  # 10.5 per instance: tolerance


def test_no_metric_keeps_the_count():
    d = run(CPU60, obs(3, None))
    assert d.desired == 3 and d.reason == "no metric value"


def test_min_zero_sleeps_after_the_idle_window_only():
    policy = Policy(min=0, max=3, triggers=(("qps", 5),))
    busy = run(policy, obs(1, None, qps=0.0), idle_for=100, idle_window=300)
    assert busy.desired == 1  # idle, but not for the window yet; never 0 through HPA's rule
    asleep = run(policy, obs(1, None, qps=0.0), idle_for=301, idle_window=300)
    assert asleep.desired == 0 and "no request" in asleep.reason
    unknown = run(policy, obs(1, None, qps=None), idle_for=None, idle_window=300)
    assert unknown.desired == 1  # no gateway report: traffic unknown, stay up
    assert run(policy, obs(0, None, qps=0.0)).desired == 0  # asleep stays asleep
    woke = Policy(min=1, max=3, triggers=(("qps", 5),))
    assert run(woke, obs(0, None)).desired == 1  # a raised minimum wakes it


def test_gpu_is_not_available_without_nvml_and_never_raises():
    from serving.metrics import gpu

    if gpu.device_count():
        pytest.skip("this machine has GPUs: the e2e on a GPU node covers it")
    assert gpu.utilization(["0"]) is None
    assert gpu.utilization([]) is None
