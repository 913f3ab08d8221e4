"""Where the shared test models are: one place for every suite.

``EMS_TESTDATA`` names the folder; without it, ``../shared/testdata`` next to the repository.
The ``testdata`` fixture (tests/conftest.py) checks it is there: a missing folder skips locally
and fails under ``EMS_REQUIRE_SERVICES=1``. Module-level paths built from :func:`testdata_dir`
are only used by tests that also ask for the fixture (directly or through another fixture).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def testdata_dir() -> Path:
    """The configured test-data folder (not checked)."""
    configured = os.environ.get("EMS_TESTDATA", "").strip()
    return Path(configured) if configured else ROOT.parent / "shared" / "testdata"


def models_dir() -> Path:
    return testdata_dir() / "models"


def require_testdata() -> Path:
    """The test-data folder; skips (or fails in CI) when it or its models are missing."""
    from tests.conftest import service_missing

    path = testdata_dir()
    if not (path / "models").is_dir():
        service_missing(
            f"the shared test models are missing: no folder {path / 'models'} "
            "(set EMS_TESTDATA to the folder that holds models/)"
        )
    return path
