"""The portal as separate real processes for the fault suite (not honcho, which stops everything
when one process dies): Celery workers, beat, gunicorn and the gateway, on the test's own
PostgreSQL database, Redis (broker, cache and routes) and the process backend's runtimes.

Each process runs in its own session, so ``kill9`` takes a worker down with its pool children
(as a crashed host or container would) while the runtimes it started — in sessions of their
own — keep running, as they do in production."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, *, timeout: float, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(every)


class Proc:
    """One portal process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path):
        self.name = name
        self.log_path = logs / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> float:
        """SIGKILL to the whole process group; returns the time it happened."""
        when = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        return when

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the main process: a worker's warm shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


class Cluster:
    """Starts and kills the portal's processes; every one sees the same environment."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.procs: list[Proc] = []
        self.web_port = free_port()

    def _start(self, name: str, argv: list[str]) -> Proc:
        proc = Proc(name, argv, self.env, self.logs)
        self.procs.append(proc)
        return proc

    def worker(self, *, wait_ready: bool = True) -> Proc:
        proc = self._start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "-n",
                f"fault-{uuid.uuid4().hex[:6]}@%h",
                "--without-mingle",
                "--without-gossip",
            ],
        )
        if wait_ready:
            wait_for(
                lambda: " ready." in proc.text() or not proc.alive(),
                timeout=90,
                every=0.1,
                what="worker ready",
            )
            assert proc.alive(), proc.text()[-3000:]
        return proc

    def beat(self) -> Proc:
        return self._start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "beat",
                "--loglevel",
                "INFO",
                "--pidfile",
                str(self.logs / f"beat-{uuid.uuid4().hex[:6]}.pid"),
                "-s",
                str(self.logs / "beat-schedule"),
            ],
        )

    def web(self) -> Proc:
        proc = self._start(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "portal.wsgi",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "1",
                "--timeout",
                "30",
            ],
        )
        wait_for(lambda: self.healthz() is not None, timeout=60, every=0.2, what="web up")
        return proc

    def healthz(self) -> int | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=5)
            conn.request("GET", "/healthz?worker=0")
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return None

    def close(self, *, tail: int = 0) -> None:
        for proc in reversed(self.procs):
            proc.stop()
            if tail:
                lines = proc.text().splitlines()[-tail:]
                print(f"--- {proc.name} ({proc.log_path.name}), last lines", *lines, sep="\n")


@dataclass
class Traffic:
    """Predictions through the gateway from ``threads`` clients, each sequential on its own
    keep-alive connection, never retrying; every answer is recorded with its times."""

    port: int
    service_id: str
    body: object
    threads: int = 2
    timeout: float = 30.0
    results: list = field(default_factory=list)  # (start, end, status or "error: ...")
    stop_event: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        data = json.dumps(self.body).encode()
        path = f"/{self.service_id}/v1/models/m:predict"
        headers = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        while not self.stop_event.is_set():
            start = time.monotonic()
            try:
                conn.request("POST", path, body=data, headers=headers)
                answer = conn.getresponse()
                answer.read()
                outcome = answer.status
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"error: {type(exc).__name__}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.results.append((start, time.monotonic(), outcome))
        conn.close()

    def __enter__(self) -> Traffic:
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(self.timeout + 10)

    def failures(self, since: float = 0.0) -> list:
        return [r for r in list(self.results) if r[2] != 200 and r[1] >= since]

    def ok(self, since: float = 0.0) -> int:
        return sum(1 for r in list(self.results) if r[2] == 200 and r[0] >= since)
