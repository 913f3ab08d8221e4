"""Shared fixtures: the test data folder and example models generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTDATA = Path(os.environ.get("EMS_TESTDATA", "/work/shared/testdata"))
if not TESTDATA.is_dir():  # the repository checkout's sibling folder, as the README names it
    TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.skip("shared/testdata is not present on this machine")
    return TESTDATA


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m runtimes.examples`` output, generated once for the session."""
    from runtimes.examples.__main__ import main

    out = tmp_path_factory.mktemp("examples")
    assert main([str(out)]) == 0
    return out
