"""Health checks: the database, the Celery broker, and a ping task's round trip via a worker."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from portal.celery import app
from portal.tasks import ping


@dataclass
class CheckResult:
    name: str
    ok: bool
    ms: float
    detail: str

    def as_dict(self) -> dict:
        return {"ok": self.ok, "ms": round(self.ms, 2), "detail": self.detail}


def _timed(name: str, check: Callable[[], str]) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # a health check reports every failure, whatever its type
        detail = f"{type(exc).__name__}: {exc}"[:300]
        ok = False
    return CheckResult(name, ok, (time.perf_counter() - started) * 1000, detail)


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _broker() -> str:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        return conn.transport.driver_type


def _worker() -> str:
    nonce = secrets.token_hex(8)
    timeout = settings.EMS_HEALTH_PING_TIMEOUT
    result = ping.apply_async(args=[nonce], expires=timeout)
    try:
        answer = result.get(timeout=timeout)
    except Exception as exc:
        raise RuntimeError(f"no worker answered the ping within {timeout}s ({exc!r})") from None
    finally:
        # The file result backend has nothing to forget when no answer came back.
        with contextlib.suppress(OSError):
            result.forget()
    if answer != f"pong:{nonce}":
        raise RuntimeError(f"unexpected ping answer {answer!r}")
    return "pong"


def run_checks(*, include_worker: bool = True) -> list[CheckResult]:
    checks = [_timed("database", _database), _timed("broker", _broker)]
    if include_worker:
        checks.append(_timed("worker", _worker))
    return checks
