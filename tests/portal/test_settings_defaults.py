"""The embedded default and the production switches resolve to the documented parts."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "engine": s.DATABASES["default"]["ENGINE"],
    "options": s.DATABASES["default"].get("OPTIONS", {}),
    "broker": s.CELERY_BROKER_URL,
    "results": s.CELERY_RESULT_BACKEND,
    "transport": getattr(s, "CELERY_BROKER_TRANSPORT", None),
    "storage": s.EMS_STORAGE_BACKEND,
    "backend": s.EMS_RUNTIME_BACKEND,
    "cache": s.CACHES["default"]["BACKEND"],
    "acks_late": s.CELERY_TASK_ACKS_LATE,
    "prefetch": s.CELERY_WORKER_PREFETCH_MULTIPLIER,
    "time_limit": s.CELERY_TASK_TIME_LIMIT,
    "visibility": s.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout"),
}))
"""


def _probe(**env: str) -> dict:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EMS_", "DATABASE_", "REDIS_", "CELERY_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "1", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_embedded_default(tmp_path):
    found = _probe(EMS_DATA_DIR=str(tmp_path))
    assert found["engine"] == "django.db.backends.sqlite3"
    assert "journal_mode=WAL" in found["options"]["init_command"]
    assert found["options"]["timeout"] >= 5
    assert found["broker"] == "filesystem://"
    # The atomic file transport and result store of portal.filebroker, not kombu's own.
    assert found["transport"] == "portal.filebroker:Transport"
    assert found["results"].startswith("portal.filebroker:FileResultBackend+file://")
    assert found["storage"] == "local"
    assert found["backend"] == "process"
    assert found["cache"].endswith("FileBasedCache")


def test_production_switches(tmp_path):
    found = _probe(
        EMS_DATA_DIR=str(tmp_path),
        DATABASE_URL="postgres://ems@db.example:5432/ems",
        REDIS_URL="redis://cache.example:6379/0",
        EMS_RUNTIME_BACKEND="docker",
    )
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["broker"] == "redis://cache.example:6379/0"
    assert found["results"] == "redis://cache.example:6379/0"
    assert found["transport"] is None
    assert found["backend"] == "docker"
    assert found["cache"].endswith("RedisCache")
    # Reliability: late acks, one message at a time, limits under the visibility timeout.
    assert found["acks_late"] is True
    assert found["prefetch"] == 1
    assert found["time_limit"] < found["visibility"]
