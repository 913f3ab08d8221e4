"""Where the runtime server runs a model call (runtimes/app.py): a kind of call known to be
short runs inline on the event loop when nothing else is being answered; unknown or slow kinds,
and calls made while another request is in flight, go to the worker pool. The model is real
(the Angel LR test model); the connection is a stand-in that records the answers."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtimes.app import RuntimeApp, ServedModel
from runtimes.loaders.angel import AngelModel

ROW = json.dumps({"instances": [[1.0] * 123]}).encode()
PATH = b"/v1/models/m:predict"


class Answers:
    """Records ``respond`` calls the way runtimes.http.HttpConn receives them."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict]] = []

    def respond(self, status: int, body: bytes, content_type: bytes = b"") -> None:
        self.answers.append((status, json.loads(body)))

    async def wait(self, count: int) -> None:
        for _ in range(60_000):
            if len(self.answers) >= count:
                return
            await asyncio.sleep(0.001)
        raise TimeoutError(f"{count} answers expected, got {self.answers}")


@pytest.fixture(scope="module")
def model(testdata):
    model = AngelModel(testdata / "models/angel/lr/lr-model/6", 1)
    model.warmup()
    return model


def test_short_calls_run_inline_only_when_idle_and_known(model):
    served = ServedModel("m", "6", state="AVAILABLE", model=model)
    pool = ThreadPoolExecutor(2)
    rt = RuntimeApp(served, pool, inline_max_s=60.0)

    async def main() -> Answers:
        rt.loop = asyncio.get_running_loop()
        conn = Answers()
        rt.dispatch(conn, b"POST", PATH, ROW)
        assert conn.answers == []  # the first call of its kind: the pool (and timed there)
        await conn.wait(1)
        rt.dispatch(conn, b"POST", PATH, ROW)
        assert len(conn.answers) == 2  # known short, nothing in flight: answered inline
        rt.busy += 1  # another request being answered: never inline next to it
        rt.dispatch(conn, b"POST", PATH, ROW)
        assert len(conn.answers) == 2
        await conn.wait(3)
        rt.busy -= 1
        rt.inline_max_s = 0.0  # the kind is now "slow": the pool again
        rt.dispatch(conn, b"POST", PATH, ROW)
        assert len(conn.answers) == 3
        await conn.wait(4)
        rt.dispatch(conn, b"POST", PATH, b"{bad json")  # errors answer at once, inline
        assert conn.answers[-1][0] == 400 and "malformed JSON" in conn.answers[-1][1]["error"]
        return conn

    try:
        conn = asyncio.run(main())
    finally:
        pool.shutdown()
    statuses = [status for status, _ in conn.answers]
    assert statuses == [200, 200, 200, 200, 400]
    first = conn.answers[0][1]
    assert all(body == first for _, body in conn.answers[1:4])  # same answer wherever it ran
    assert rt.busy == 0
