"""Adaptive batching: concurrent row-format requests merged into one model call.

Requests hand their already parsed inputs to the batcher: from the event loop with
:meth:`Batcher.submit` (a callback gets the answer), or from a worker thread with
:meth:`Batcher.run` (blocks). One batching thread takes what is queued, concatenates
compatible requests along dimension 0 (same signature, input names, dtypes and trailing
shapes), calls the model once and hands each caller exactly its own rows back.

The policy is adaptive rather than a fixed timer:

- **Nothing else queued, nothing running: dispatch at once.** Requests the loop parsed in one
  turn are handed over together at the end of that turn. A lone request whose model call is
  known to be short (its running mean is under ``inline_max_s``) runs right there on the event
  loop: no thread hop, so batching adds nothing at one connection. Otherwise it goes to the
  batching thread, which runs it without waiting.
- **Under load, batches form by themselves**: requests that arrive while the model is busy
  queue up and the next call takes them all (up to ``max_batch`` rows). A batch closes as soon
  as it holds ``max_batch`` rows or no other request is on its way (every request announced
  with :meth:`arrival` is queued), at the latest ``max_wait`` after its first request.

Few wake-ups: the loop wakes the waiting batching thread only once what it waits for is queued
(not per arriving request), and a batch's answers go back to the loop in one hand-over.

If a merged call fails, the batch is split in halves and each half retried, so a request the
model rejects ends up alone (in about 2·log2(n) extra calls) and the others still get their
answers from merged calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("runtimes.server")

RunFn = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]
DoneFn = Callable[[dict[str, np.ndarray] | None, BaseException | None], None]
# Requests of at most this many rows may run inline on the event loop (when the model is idle
# and its calls of that kind are short); larger ones always go to the batching thread.
INLINE_ROWS = 4
EWMA = 0.2  # weight of the newest call in the running mean of a call's duration
EXPECT_WAIT_S = 0.002  # longest wait for the requests the last batch suggests will come


@dataclass(eq=False)  # identity: the queue removes exactly this item, never compares arrays
class _Item:
    signature: str
    feeds: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]
    arrived: float
    done: threading.Event | None = None  # set for callers in worker threads (run)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    callback: DoneFn | None = None  # set for callers on the event loop (submit)
    loop: asyncio.AbstractEventLoop | None = None


def _answer_on_loop(items: list[_Item]) -> None:
    """On the event loop: hand each loop caller of a batch its outputs (one wake-up a batch)."""
    for item in items:
        try:
            item.callback(item.outputs, item.error)  # type: ignore[misc]
        except Exception:  # one caller's bug must not strand the others of its batch
            log.exception("a batched request's callback failed")


def batch_key(signature: str, feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """Requests with equal keys can be concatenated along dimension 0."""
    return (
        signature,
        tuple(sorted((name, arr.dtype.str, arr.shape[1:]) for name, arr in feeds.items())),
    )


class Batcher:
    """Merges concurrent calls of one model; ``observe(rows)`` records each model call's size."""

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch: int,
        max_wait_s: float,
        observe: Callable[[int], None] | None = None,
        inline_max_s: float = 0.0,
    ) -> None:
        if max_batch < 2:
            raise ValueError("a batcher needs max_batch >= 2")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.inline_max_s = inline_max_s
        self._cost: dict[tuple[Any, ...], float] = {}  # batch key -> mean seconds of a call
        self._pending: list[_Item] = []  # submitted in this loop turn (loop thread only)
        self._flush_scheduled = False
        self._running = False  # the batching thread is running a batch
        self._last_rows = 0  # rows of the last batch taken
        self._observe = observe or (lambda rows: None)
        self._cond = threading.Condition()
        self._queue: list[_Item] = []
        self._queued_rows = 0  # rows in _queue
        # What the waiting batching thread needs before it re-checks its batch (rows queued;
        # 0: any request), None while it is not waiting. The loop wakes it only then: a
        # wake-up per arriving request costs the loop a futex call, the thread a GIL fight.
        self._wanted: int | None = None
        self._arriving = 0
        self._local = threading.local()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    # --- request threads ---------------------------------------------------------------------

    @contextmanager
    def arrival(self) -> Iterator[None]:
        """Announce a request that may reach :meth:`run` soon (it is being parsed), so an
        open batch waits for it instead of closing early."""
        with self._cond:
            self._arriving += 1
        self._local.announced = True
        try:
            yield
        finally:
            if getattr(self._local, "announced", False):
                self._local.announced = False
                with self._cond:
                    self._arriving -= 1
                    self._cond.notify()

    def submit(self, signature: str, feeds: dict[str, np.ndarray], done: DoneFn) -> None:
        """From the event loop: queue one request's inputs; ``done(outputs, error)`` is called
        on the loop with its own rows. Parsing on the loop and answering from it keeps the
        threads fighting for the GIL down to two (loop and batcher)."""
        item = self._item(signature, feeds)
        item.callback = done
        item.loop = asyncio.get_running_loop()
        self._pending.append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            item.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """End of a loop turn: run a lone request inline, or hand everything to the thread."""
        pending, self._pending = self._pending, []
        self._flush_scheduled = False
        if len(pending) == 1 and self._inline_ok(pending[0]):
            with self._cond:
                idle = not self._running and not self._queue and self._arriving <= 0
            if idle:
                self._run_alone(pending[0], on_loop=True)
                return
        with self._cond:
            if self._stopped:
                error = RuntimeError("the batcher is stopped")
                for item in pending:
                    item.error = error
                _answer_on_loop(pending)
                return
            self._queue.extend(pending)
            self._queued_rows += sum(item.rows for item in pending)
            if self._wanted is not None and self._queued_rows >= self._wanted:
                self._cond.notify()

    def _inline_ok(self, item: _Item) -> bool:
        cost = self._cost.get(item.key)
        return item.rows <= INLINE_ROWS and cost is not None and cost <= self.inline_max_s

    def idle(self) -> bool:
        """Nothing queued or running: another model call would not delay a batch."""
        with self._cond:
            return not (self._running or self._queue or self._pending or self._arriving > 0)

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """From a worker thread: queue one request's inputs, wait for its batch, return its
        own rows of the outputs."""
        item = self._item(signature, feeds)
        item.done = threading.Event()
        self._enqueue(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.outputs is not None
        return item.outputs

    @staticmethod
    def _item(signature: str, feeds: dict[str, np.ndarray]) -> _Item:
        rows = int(next(iter(feeds.values())).shape[0]) if feeds else 0
        return _Item(signature, feeds, rows, batch_key(signature, feeds), time.monotonic())

    def _enqueue(self, item: _Item) -> None:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            if getattr(self._local, "announced", False):
                self._local.announced = False
                self._arriving -= 1
            self._queue.append(item)
            self._queued_rows += item.rows
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # --- the batching thread -----------------------------------------------------------------

    def _take_batch(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._stopped:
                    return None
                self._wanted = 0
                self._cond.wait()
            first = self._queue[0]
            deadline = first.arrived + self.max_wait_s
            # Under steady load about as many requests come back as the last batch answered:
            # wait a little for them rather than run a fraction of them now and the rest
            # after a whole model call. Measured from now: they were answered just now.
            expect_until = time.monotonic() + min(self.max_wait_s, EXPECT_WAIT_S)
            while True:
                batch, rows = self._compatible(first)
                if rows >= self.max_batch:
                    break
                if self._arriving > 0:  # announced requests still being parsed
                    until, self._wanted = deadline, self.max_batch
                elif rows < self._last_rows:
                    until, self._wanted = expect_until, self._last_rows
                else:
                    break
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._wanted = None
            for item in batch:
                self._queue.remove(item)
            self._queued_rows -= rows
            self._last_rows = rows
            self._running = True
            return batch

    def _compatible(self, first: _Item) -> tuple[list[_Item], int]:
        batch, rows = [first], first.rows
        for item in self._queue[1:]:
            if item.key == first.key and rows + item.rows <= self.max_batch:
                batch.append(item)
                rows += item.rows
        return batch, rows

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                self._execute(batch)
            except BaseException as exc:  # never leave a caller waiting on a dead thread
                for item in batch:
                    if item.outputs is None and item.error is None:
                        item.error = exc
            # Idle before the answers go out: a caller answered now and asking again at once
            # finds the model idle (and may run inline), not still busy with its own batch.
            with self._cond:
                self._running = False
            on_loop = []
            for item in batch:
                if item.done is not None:
                    item.done.set()
                else:
                    on_loop.append(item)
            # One hand-over to the loop for the whole batch, not one wake-up per request.
            loops: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
            for item in on_loop:
                loops.setdefault(item.loop, []).append(item)  # type: ignore[arg-type]
            for loop, items in loops.items():
                try:
                    loop.call_soon_threadsafe(_answer_on_loop, items)
                except RuntimeError:  # the loop is closed: nobody is left to answer
                    log.warning("%d batched answers dropped: the event loop is closed", len(items))

    def _execute(self, batch: list[_Item]) -> None:
        """Run the batch as one call; if that fails, split it in halves and retry each, so a
        request the model rejects ends up alone while the others still run merged."""
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        total = sum(item.rows for item in batch)
        try:
            merged = {
                name: np.concatenate([item.feeds[name] for item in batch])
                for name in batch[0].feeds
            }
            self._observe(total)
            outputs = self._run(batch[0].signature, merged)
            if any(np.ndim(arr) == 0 or np.shape(arr)[0] != total for arr in outputs.values()):
                raise ValueError("an output is not batched along dimension 0")
        except Exception:  # the merged call failed: find the request(s) it failed on
            half = len(batch) // 2
            self._execute(batch[:half])
            self._execute(batch[half:])
            return
        offset = 0
        for item in batch:
            item.outputs = {name: arr[offset : offset + item.rows] for name, arr in outputs.items()}
            offset += item.rows

    def _run_alone(self, item: _Item, on_loop: bool = False) -> None:
        try:
            self._observe(item.rows)
            started = time.perf_counter()
            item.outputs = self._run(item.signature, item.feeds)
            if item.rows <= INLINE_ROWS:  # the running mean that decides on inline calls
                took = time.perf_counter() - started
                old = self._cost.get(item.key)
                self._cost[item.key] = took if old is None else old + EWMA * (took - old)
        except BaseException as exc:  # handed to the request's own caller, which raises it
            item.error = exc
        if on_loop:  # on the batching thread, _loop answers the whole batch at the end
            _answer_on_loop([item])
