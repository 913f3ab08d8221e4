"""Start a runtime server as a child process and wait for it: for tests, benchmarks, e2e."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """``python -m runtimes.server`` in a child process; ``with`` waits for AVAILABLE."""

    def __init__(
        self,
        runtime: str,
        model_dir: str | Path,
        name: str = "m",
        threads: int = 1,
        timeout: float = 120.0,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(extra_env or {}))
        self.argv = [
            sys.executable,
            "-m",
            "runtimes.server",
            "--runtime",
            runtime,
            "--model-dir",
            str(model_dir),
            "--model-name",
            name,
            "--port",
            str(self.port),
            "--threads",
            str(threads),
            *(extra_args or []),
        ]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> RunningServer:
        # A file, not a pipe: nobody reads stderr while the server runs, and a full pipe blocks.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.stderr()}")
            try:
                status, body = self.request("GET", f"/v1/models/{self.name}")
                if status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE":
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not AVAILABLE after {self.timeout}s: {self.stderr()}")

    def stderr(self) -> str:
        """Everything the server has written to stderr so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a request; ``body`` may be bytes (sent as is) or JSON-able. Returns status, JSON."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        try:  # http://127.0.0.1 only: the URL is built above
            with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                raw = resp.read()
                status = resp.status
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in ctype else raw.decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
