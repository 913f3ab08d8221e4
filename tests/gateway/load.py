"""A bounded loopback load for the fault tests: a few client threads, every answer recorded.

Each thread sends one request at a time (a short pause between), over a new connection per
request or over one keep-alive connection (reopened after an error or ``connection: close``,
as HTTP clients do). Nothing is retried: every error the caller would see is counted.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    started: float
    ended: float
    status: int  # 0: no HTTP answer (refused, reset, timeout)
    error: str = ""


@dataclass
class Load:
    port: int
    path: str
    body: dict | None = None
    threads: int = 3
    keepalive: bool = True
    pause: float = 0.01
    timeout: float = 90.0
    headers: dict = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Result]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self.results

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        data = json.dumps(self.body).encode() if self.body is not None else None
        headers = {"Content-Type": "application/json", **self.headers}
        conn = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.monotonic()
            try:
                conn.request("POST" if data else "GET", self.path, body=data, headers=headers)
                resp = conn.getresponse()
                resp.read()
                res = Result(started, time.monotonic(), resp.status)
                if not self.keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                res = Result(started, time.monotonic(), 0, f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
            with self._lock:
                self.results.append(res)
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def since(self, t: float) -> list[Result]:
        with self._lock:
            return [r for r in self.results if r.started >= t]


def failed(results: list[Result]) -> list[Result]:
    return [r for r in results if r.status != 200]


def summary(results: list[Result]) -> str:
    bad = failed(results)
    worst = max((r.ended - r.started for r in results), default=0.0)
    kinds = sorted({r.error or str(r.status) for r in bad})
    return f"{len(bad)} failed of {len(results)}, slowest {worst:.2f}s {kinds[:3]}"
