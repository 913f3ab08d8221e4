"""Embedded brokers under concurrent producers and consumers, with the CPUs saturated.

    python -m bench.embedded_broker_bench [--producers 4] [--messages 500] [--consumers 2]
        [--burners 2] [--transports ems,kombu-filesystem,sqla-sqlite]

Each transport gets its own temporary folder; producer processes publish numbered messages
while consumer processes drain them. Reported per transport: seconds, messages/s, messages
lost or delivered twice, and consumer crashes (an exception out of the transport, which is what
kills a Celery worker). ``sqla-sqlite`` needs SQLAlchemy importable (not a requirement of the
portal: put it on PYTHONPATH to compare).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from kombu import Connection

QUEUE = "bench"


def _connection(kind: str, root: Path) -> Connection:
    if kind == "sqla-sqlite":
        return Connection(f"sqla+sqlite:///{root / 'broker.sqlite3'}")
    options = {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processed"),
        "control_folder": str(root / "control"),
        "claimed_folder": str(root / "claimed"),
        "dead_letter_folder": str(root / "dead-letter"),
    }
    for path in options.values():
        os.makedirs(path, exist_ok=True)
    transport = "portal.filebroker:Transport" if kind == "ems" else "filesystem"
    return Connection("filesystem://", transport=transport, transport_options=options)


def _produce(kind: str, root: str, producer: int, count: int, errors) -> None:
    with _connection(kind, Path(root)) as conn:
        queue = conn.SimpleQueue(QUEUE)
        for n in range(count):
            try:
                queue.put({"p": producer, "n": n, "pad": "x" * 2000})
            except Exception as exc:  # counted, not fatal: the bench reports it
                errors.put(f"put: {type(exc).__name__}: {exc}")


def _consume(kind: str, root: str, seen, crashes, stop) -> None:
    while not stop.is_set():
        try:
            with _connection(kind, Path(root)) as conn:
                queue = conn.SimpleQueue(QUEUE)
                while not stop.is_set():
                    try:
                        message = queue.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    seen.put(f"{message.payload['p']}:{message.payload['n']}")
                    message.ack()
        except Exception as exc:  # what would have been "Unrecoverable error" in a worker
            crashes.put(f"{type(exc).__name__}: {str(exc)[:120]}")


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


def run(kind: str, producers: int, messages: int, consumers: int, burners: int) -> dict:
    ctx = mp.get_context("fork")
    stop, burn_stop = ctx.Event(), ctx.Event()
    seen, crashes, errors = ctx.Queue(), ctx.Queue(), ctx.Queue()
    with tempfile.TemporaryDirectory(prefix=f"ems-broker-{kind}-") as root:
        if kind == "sqla-sqlite":
            with _connection(kind, Path(root)) as conn:
                conn.SimpleQueue(QUEUE).close()  # create the tables once
        burn = [ctx.Process(target=_burn, args=(burn_stop,)) for _ in range(burners)]
        cons = [
            ctx.Process(target=_consume, args=(kind, root, seen, crashes, stop))
            for _ in range(consumers)
        ]
        prods = [
            ctx.Process(target=_produce, args=(kind, root, p, messages, errors))
            for p in range(producers)
        ]
        for proc in burn + cons:
            proc.start()
        started = time.monotonic()
        for proc in prods:
            proc.start()
        expected = producers * messages
        got: list[str] = []
        deadline = started + 300
        last = time.monotonic()
        while len(got) < expected and time.monotonic() < deadline:
            try:
                got.append(seen.get(timeout=1))
                last = time.monotonic()
            except Exception:  # the queue's Empty: wait, unless deliveries have stopped
                producing = any(p.is_alive() for p in prods)
                if not producing and time.monotonic() - last > 15:
                    break
        elapsed = last - started
        time.sleep(1)
        while not seen.empty():
            got.append(seen.get())
        stop.set()
        burn_stop.set()
        for proc in prods + cons + burn:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        drained = []
        while not crashes.empty():
            drained.append(crashes.get())
        put_errors = []
        while not errors.empty():
            put_errors.append(errors.get())
        dead = len(list((Path(root) / "dead-letter").glob("*.msg")))
    unique = set(got)
    return {
        "transport": kind,
        "messages": expected,
        "seconds": round(elapsed, 2),
        "per_second": round(len(unique) / elapsed, 1) if elapsed else 0,
        "lost": expected - len(unique),
        "duplicates": len(got) - len(unique),
        "consumer_crashes": len(drained),
        "crash_sample": drained[:3],
        "put_errors": len(put_errors),
        "put_error_sample": put_errors[:3],
        "dead_letters": dead,
    }


def write_doc(rows: list[dict], args) -> None:
    from bench.report import markdown_table, write_section

    text = [
        "Written by `python -m bench.embedded_broker_bench` (SQLAlchemy on PYTHONPATH for the "
        f"`sqla-sqlite` row): {args.producers} producer and {args.consumers} consumer processes, "
        f"{args.producers * args.messages} messages of 2 KB, {args.burners} CPU burners running. "
        "A consumer crash is an exception out of the transport: what stops a Celery worker "
        '("Unrecoverable error"). `ems` is `portal.filebroker`, the embedded default; '
        "`sqla-sqlite` is kombu's SQLAlchemy transport with SQLAlchemy's defaults.",
        "",
        markdown_table(
            ["transport", "delivered/s", "lost", "delivered twice", "consumer crashes", "sample"],
            [
                [
                    r["transport"],
                    r["per_second"],
                    r["lost"],
                    r["duplicates"],
                    r["consumer_crashes"],
                    (r["crash_sample"] or [""])[0].split("\n")[0][:70],
                ]
                for r in rows
            ],
        ),
    ]
    write_section("Embedded broker", "\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--transports", default="ems,kombu-filesystem,sqla-sqlite")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    for kind in args.transports.split(","):
        result = run(kind, args.producers, args.messages, args.consumers, args.burners)
        print(json.dumps(result), flush=True)
        rows.append(result)
    if args.write:
        write_doc(rows, args)


if __name__ == "__main__":
    main()
