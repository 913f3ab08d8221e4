"""A whole portal as `make run` starts it — the Procfile's processes (web, worker, beat,
gateway) on the embedded default (SQLite, the embedded broker, the process backend, the file
route store) in a temporary data folder — for tests that meet the product from outside."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Settings that would point the stack at the test run's own servers: the stack gets none.
_SERVER_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "EMS_GATEWAY_ROUTES",
    "EMS_STORAGE_BACKEND",
    "EMS_RUNTIME_BACKEND",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


@dataclass
class LiveStack:
    data_dir: Path
    env: dict[str, str]
    web_url: str
    gateway_url: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 300, env: dict | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start(self) -> None:
        self.manage("migrate", "--noinput")
        self.manage("ems_bootstrap")
        self.manage("collectstatic", "--noinput", "-v", "0")
        for name, command in procfile().items():
            log = (self.data_dir / f"{name}.log").open("w")
            self.procs[name] = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_http(self.web_url + "/api/schema/", "web")
        self.wait_http(self.gateway_url + "/ems-00000000/v1/models/m", "gateway", any_status=True)

    def wait_http(self, url: str, name: str, *, any_status: bool = False, timeout=90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return
            except urllib.error.HTTPError:
                if any_status:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} did not answer at {url} within {timeout} s:\n{self.logs(name)}")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs(name)}")

    def logs(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Runtime processes the worker started live in their own sessions: stop them too.
        subprocess.run(
            ["pkill", "-TERM", "-f", f"model-dir {self.data_dir}"], check=False, timeout=10
        )


def live_stack() -> LiveStack:
    data_dir = Path(tempfile.mkdtemp(prefix="ems-live-"))
    data_dir.chmod(0o755)
    web, gateway, admin = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_SETTINGS}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": f"{bin_dir}:{env.get('PATH', '')}",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "EMS_DATA_DIR": str(data_dir),
            "EMS_WEB_BIND": f"127.0.0.1:{web}",
            "EMS_WEB_WORKERS": "2",
            "EMS_WORKER_CONCURRENCY": "2",
            "EMS_GATEWAY_BIND": f"127.0.0.1:{gateway}",
            "EMS_GATEWAY_ADMIN_BIND": f"127.0.0.1:{admin}",
            "EMS_GATEWAY_URL": f"http://127.0.0.1:{gateway}",
            "DEBUG": "0",
            "SECRET_KEY": "live-stack-" + "k" * 40,
            "EMS_SECRETS_KEY": env.get("EMS_SECRETS_KEY")
            or "PdR3dJ0N4fyJ3R8yqZqHf8wz3m1o9C0kq8dDk3ZkqXc=",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # short meter windows: the journeys read usage and bills within a minute of a
            # service starting (the production default is 60 s behind by 30 s)
            "EMS_METERING_WINDOW_SECONDS": "10",
            "EMS_METERING_LAG_SECONDS": "2",
        }
    )
    return LiveStack(
        data_dir=data_dir,
        env=env,
        web_url=f"http://127.0.0.1:{web}",
        gateway_url=f"http://127.0.0.1:{gateway}",
    )


def shell_join(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
