"""Adaptive batching: concurrent requests merged into one model call, each caller gets exactly
its own rows, a request the model rejects fails alone, a lone request does not wait."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from runtimes.batching import INLINE_ROWS, Batcher, batch_key
from runtimes.examples.flower import CLASSES
from runtimes.testing import RunningServer


def _double(calls: list[int]):
    def run(signature, feeds):
        x = feeds["x"]
        calls.append(x.shape[0])
        time.sleep(0.01)  # a model call long enough for others to queue behind it
        if np.isnan(x).any():
            raise ValueError("NaN in input")
        return {"y": x * 2, "row_sum": x.sum(axis=1)}

    return run


def test_concurrent_calls_are_merged_and_split_back():
    calls: list[int] = []
    # A window far longer than any scheduling hiccup: batches form because every caller has
    # arrived (the batcher knows), never because a short timer happened to catch them.
    batcher = Batcher(_double(calls), max_batch=32, max_wait_s=30)
    barrier = threading.Barrier(32)
    try:
        with ThreadPoolExecutor(32) as pool:

            def one(i):
                with batcher.arrival():
                    barrier.wait()
                    x = np.full((1 + i % 3, 4), float(i), dtype=np.float32)
                    return i, batcher.run("serving_default", {"x": x})

            results = list(pool.map(one, range(32)))
    finally:
        batcher.stop()
    for i, out in results:
        assert out["y"].shape == (1 + i % 3, 4)
        assert np.all(out["y"] == 2.0 * i)
        assert np.all(out["row_sum"] == 4.0 * i)
    assert max(calls) > 1
    assert sum(calls) == sum(1 + i % 3 for i in range(32))
    assert all(rows <= 32 for rows in calls)


def test_a_rejected_request_fails_alone():
    calls: list[int] = []
    batcher = Batcher(_double(calls), max_batch=32, max_wait_s=30)
    barrier = threading.Barrier(8)
    try:
        with ThreadPoolExecutor(8) as pool:

            def one(i):
                with batcher.arrival():
                    barrier.wait()
                    value = np.nan if i == 3 else float(i)
                    try:
                        return batcher.run("s", {"x": np.full((1, 2), value)})["y"][0, 0]
                    except ValueError as exc:
                        return str(exc)

            results = list(pool.map(one, range(8)))
    finally:
        batcher.stop()
    assert results[3] == "NaN in input"
    assert [r for i, r in enumerate(results) if i != 3] == [2.0 * i for i in range(8) if i != 3]
    # Bisected, not rerun one by one: the good requests still went through merged calls.
    assert len(calls) < 1 + 8 and max(calls[1:]) > 1


def test_incompatible_requests_wait_for_their_own_batch():
    """A batch may take items from the middle of the queue; the others stay queued intact."""
    calls: list[int] = []
    batcher = Batcher(_double(calls), max_batch=32, max_wait_s=30)
    widths = [4, 5, 4, 5, 4]
    barrier = threading.Barrier(len(widths))
    try:
        with ThreadPoolExecutor(len(widths)) as pool:

            def one(i):
                with batcher.arrival():
                    barrier.wait()
                    x = np.full((1, widths[i]), float(i))
                    return batcher.run("s", {"x": x})["y"]

            results = list(pool.map(one, range(len(widths))))
    finally:
        batcher.stop()
    for i, y in enumerate(results):
        assert y.shape == (1, widths[i]) and np.all(y == 2.0 * i)
    assert sorted(calls) == [2, 3]  # the width-5 pair and the width-4 triple, one call each


def test_a_lone_request_does_not_wait_for_the_window():
    calls: list[int] = []
    window = 60.0
    batcher = Batcher(
        lambda s, f: (calls.append(1), {"y": f["x"]})[1], max_batch=32, max_wait_s=window
    )
    try:
        with batcher.arrival():
            started = time.monotonic()
            batcher.run("s", {"x": np.ones((1, 1))})
            elapsed = time.monotonic() - started
    finally:
        batcher.stop()
    # the window is not waited out when nobody else is coming (half of it is far beyond any
    # load-induced delay, and far short of the window)
    assert elapsed < window / 2


def test_only_same_signature_and_shape_merge():
    a = batch_key("s", {"x": np.zeros((3, 4), np.float32)})
    assert a == batch_key("s", {"x": np.zeros((1, 4), np.float32)})
    assert a != batch_key("t", {"x": np.zeros((1, 4), np.float32)})
    assert a != batch_key("s", {"x": np.zeros((1, 5), np.float32)})
    assert a != batch_key("s", {"x": np.zeros((1, 4), np.float64)})


def _batch_histogram(metrics: str) -> dict[str, float]:
    return {
        le: float(count)
        for le, count in re.findall(r'ems_runtime_batch_size_bucket\{le="([^"]+)"\} (\S+)', metrics)
    }


@pytest.mark.integration
def test_flower_server_batches_32_distinct_concurrent_requests(examples_dir):
    pictures = {c: (examples_dir / f"flower/sample_{c}.jpg").read_bytes() for c in CLASSES}
    bodies = []
    for i in range(32):
        cls = CLASSES[i % len(CLASSES)]
        if i == 13:
            bodies.append(
                ({"instances": [{"b64": base64.b64encode(b"not a jpeg").decode()}]}, None)
            )
        else:
            bodies.append(({"instances": [{"b64": base64.b64encode(pictures[cls]).decode()}]}, cls))
    args = ["--max-batch-size", "32", "--max-batch-wait-ms", "1000"]  # room on a loaded host
    with RunningServer("tfserving", examples_dir / "flower", threads=2, extra_args=args) as srv:
        with ThreadPoolExecutor(32) as pool:
            answers = list(
                pool.map(lambda b: srv.request("POST", "/v1/models/m:predict", b[0]), bodies)
            )
        metrics = srv.request("GET", "/metrics")[1]
    for (status, body), (_, want) in zip(answers, bodies, strict=True):
        if want is None:
            assert status == 400, body
            assert "error" in body
        else:
            assert status == 200, body
            assert body["predictions"][0]["classes"] == want
    histogram = _batch_histogram(metrics)
    assert histogram["+Inf"] < 32  # fewer model calls than requests...
    assert histogram["1.0"] < histogram["+Inf"]  # ...because at least one held several rows


@pytest.mark.integration
def test_batching_off_calls_the_model_once_per_request(examples_dir):
    request = {
        "instances": [
            {"b64": base64.b64encode((examples_dir / "flower/flower.jpg").read_bytes()).decode()}
        ]
    }
    with RunningServer(
        "tfserving", examples_dir / "flower", threads=2, extra_args=["--max-batch-size", "0"]
    ) as srv:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: srv.request("POST", "/v1/models/m:predict", request), range(8))
            )
        metrics = srv.request("GET", "/metrics")[1]
    assert all(status == 200 for status, _ in answers)
    assert _batch_histogram(metrics).get("+Inf", 0.0) == 0.0  # the batcher never ran


def _submit(loop, batcher, value, rows=1):
    future = loop.create_future()
    batcher.submit(
        "s",
        {"x": np.full((rows, 2), float(value))},
        lambda outputs, error: future.set_exception(error) if error else future.set_result(outputs),
    )
    return future


def test_a_lone_request_from_the_loop_runs_inline_once_its_calls_are_known_short():
    """Dispatch at once, without a thread hop: the first call of its kind runs on the batching
    thread (and is timed); later lone ones run on the event loop itself."""
    threads: list[int] = []

    def run(signature, feeds):
        threads.append(threading.get_ident())
        return {"y": feeds["x"] * 2}

    batcher = Batcher(run, max_batch=32, max_wait_s=60.0, inline_max_s=60.0)

    async def main():
        loop = asyncio.get_running_loop()
        results = [(await _submit(loop, batcher, i))["y"][0, 0] for i in range(3)]
        big = (await _submit(loop, batcher, 7, rows=INLINE_ROWS + 1))["y"]
        return threading.get_ident(), results, big

    try:
        loop_thread, results, big = asyncio.run(main())
    finally:
        batcher.stop()
    assert results == [0.0, 2.0, 4.0] and big.shape == (INLINE_ROWS + 1, 2)
    assert threads[0] != loop_thread  # unknown cost: the batching thread
    assert threads[1:3] == [loop_thread, loop_thread]  # known short: inline
    assert threads[3] != loop_thread  # more rows than an inline call takes


def test_requests_arriving_while_the_model_runs_form_the_next_batch():
    """No timer: what queued behind a running call is merged into the next one."""
    calls: list[int] = []
    gate = threading.Event()

    def run(signature, feeds):
        calls.append(feeds["x"].shape[0])
        if len(calls) == 1:
            assert gate.wait(60)
        return {"y": feeds["x"] * 2}

    batcher = Batcher(run, max_batch=32, max_wait_s=0.0)  # inline off

    async def main():
        loop = asyncio.get_running_loop()
        first = _submit(loop, batcher, 0)
        while not calls:  # the first one is running on the batching thread
            await asyncio.sleep(0.001)
        rest = [_submit(loop, batcher, i) for i in range(1, 11)]
        await asyncio.sleep(0.05)  # their flush runs on the next loop turn, long before this
        gate.set()
        return [(await f)["y"][0, 0] for f in (first, *rest)]

    try:
        results = asyncio.run(main())
    finally:
        batcher.stop()
    assert calls == [1, 10]
    assert results == [2.0 * i for i in range(11)]


def test_a_batch_is_answered_on_the_loop_in_one_hand_over():
    """One wake-up of the event loop per batch, not one per request: the batching thread
    hands all of a batch's loop callers back with a single ``call_soon_threadsafe``."""
    calls: list[int] = []
    gate = threading.Event()

    def run(signature, feeds):
        calls.append(feeds["x"].shape[0])
        if len(calls) == 1:
            assert gate.wait(60)
        return {"y": feeds["x"] * 2}

    batcher = Batcher(run, max_batch=32, max_wait_s=0.0)  # inline off
    hand_overs: list[int] = []

    async def main():
        loop = asyncio.get_running_loop()
        plain = loop.call_soon_threadsafe

        def counted(callback, *args, **kwargs):
            if args and isinstance(args[0], list):  # a batch's callers
                hand_overs.append(len(args[0]))
            return plain(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        first = _submit(loop, batcher, 0)
        while not calls:
            await asyncio.sleep(0.001)
        rest = [_submit(loop, batcher, i) for i in range(1, 9)]
        await asyncio.sleep(0.05)
        gate.set()
        return [(await f)["y"][0, 0] for f in (first, *rest)]

    try:
        results = asyncio.run(main())
    finally:
        batcher.stop()
    assert calls == [1, 8]
    assert results == [2.0 * i for i in range(9)]
    assert hand_overs == [1, 8]


def test_a_closed_loop_does_not_kill_the_batching_thread():
    """Answers for a loop that has closed meanwhile are dropped; callers in worker threads
    are still served by the same batching thread."""
    gate = threading.Event()

    def run(signature, feeds):
        assert gate.wait(60)
        return {"y": feeds["x"] * 2}

    batcher = Batcher(run, max_batch=32, max_wait_s=0.0)  # inline off

    async def main():
        _submit(asyncio.get_running_loop(), batcher, 1)
        await asyncio.sleep(0.01)  # flushed to the batching thread, which waits on the gate

    try:
        asyncio.run(main())  # closes its loop while the batch is still running
        gate.set()
        out: list = []  # a daemon thread: a dead batching thread would leave it waiting
        caller = threading.Thread(
            target=lambda: out.append(batcher.run("s", {"x": np.full((1, 2), 3.0)})),
            daemon=True,
        )
        caller.start()
        caller.join(30)
    finally:
        batcher.stop()
    assert len(out) == 1 and out[0]["y"][0, 0] == 6.0


def test_tensorflow_pool_threads_do_not_spin():
    """The tfserving loader turns TF's thread spinning off before TF's eager context starts
    (a fresh process: in this one TF may already be initialised by other tests)."""
    code = (
        "from runtimes.loaders.tfserving import _import_tf\n"
        "tf = _import_tf(2)\n"
        "print(float(tf.constant(2.0) * 2))\n"
        "from tensorflow.python.eager import context\n"
        "print(context.context().config.experimental.disable_thread_spinning)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    ).stdout.split()
    assert out[-2:] == ["4.0", "True"]


@pytest.mark.integration
def test_jpeg_classifier_batched_answers_equal_unbatched_ones(tmp_path):
    """String ({"b64": …}) inputs batch like any other: 32 concurrent requests of different
    pictures through the batcher get exactly the answers each gets alone."""
    from runtimes.examples.jpeg_classifier import write_jpeg_classifier

    write_jpeg_classifier(tmp_path)
    root = tmp_path / "jpeg"
    pictures = [(root / f"sample_{c}.jpg").read_bytes() for c in CLASSES]
    bodies = [
        {"instances": [{"b64": base64.b64encode(pictures[i % len(CLASSES)]).decode()}]}
        for i in range(32)
    ]
    with RunningServer("tfserving", root, threads=2, extra_args=["--max-batch-size", "0"]) as srv:
        alone = [srv.request("POST", "/v1/models/m:predict", b) for b in bodies[:5]]
    args = ["--max-batch-size", "32", "--max-batch-wait-ms", "1000"]
    with RunningServer("tfserving", root, threads=2, extra_args=args) as srv:
        with ThreadPoolExecutor(32) as pool:
            answers = list(
                pool.map(lambda b: srv.request("POST", "/v1/models/m:predict", b), bodies)
            )
        metrics = srv.request("GET", "/metrics")[1]
    assert all(a["predictions"][0]["classes"] in CLASSES for _, a in alone)
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        want = alone[i % len(CLASSES)][1]["predictions"][0]
        got = body["predictions"][0]
        assert got["classes"] == want["classes"]
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    histogram = _batch_histogram(metrics)
    assert histogram["1.0"] < histogram["+Inf"]  # at least one call held several requests
