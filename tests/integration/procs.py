"""Real processes for the integration suites: gunicorn with the Procfile's configuration, a
Celery worker, and a private PostgreSQL cluster a test may stop and start (never the shared one).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtimes.testing import free_port
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[2]


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The embedded default in ``tmp_path`` (no Redis, no shared database), plus ``env``."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EMS_", "DATABASE_", "REDIS_", "CELERY_"))
    }
    environ.update(DJANGO_SETTINGS_MODULE="portal.settings", DEBUG="1", EMS_DATA_DIR=str(tmp_path))
    environ.update(env)
    return environ


@contextmanager
def gunicorn(tmp_path: Path, **env: str):
    port = free_port()
    environ = clean_env(
        tmp_path, **{"EMS_WEB_BIND": f"127.0.0.1:{port}", "EMS_WEB_WORKERS": "1", **env}
    )
    log = open(tmp_path / "gunicorn.log", "w+b")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "portal.wsgi",
            "--config",
            "python:portal.gunicorn_conf",
        ],
        cwd=ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                healthz(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"gunicorn did not start:\n{log.read().decode()}") from None
                time.sleep(0.3)
        yield url, port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def healthz(url: str, timeout: float = 10, worker: bool = False) -> float:
    """Seconds /healthz took (200 expected); ``worker`` adds the round trip through a worker."""
    started = time.monotonic()
    query = "" if worker else "?worker=0"
    with urllib.request.urlopen(f"{url}/healthz{query}", timeout=timeout) as answer:
        assert answer.status == 200
        answer.read()
    return time.monotonic() - started


@contextmanager
def celery_worker(tmp_path: Path, **env: str) -> Iterator[subprocess.Popen]:
    """The Procfile's worker (solo pool, to spare the CPUs) on the environment of ``tmp_path``."""
    log = open(tmp_path / "worker.log", "w+b")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "solo",
        ],
        cwd=ROOT,
        env=clean_env(tmp_path, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, in a temporary folder on a free port."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            service_missing("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ems-pg-"))
        self.data = self.root / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/ems"
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.root, "postgres")

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        )
        self.start()
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE ems")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.init()
        yield pg
    finally:
        pg.destroy()
