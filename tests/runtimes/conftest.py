"""Shared fixtures: the test data folder and example models generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.testdata import require_testdata


@pytest.fixture(scope="session")
def testdata() -> Path:
    """As tests/conftest.py's, repeated so ``--confcutdir tests/runtimes`` finds it too."""
    return require_testdata()


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m runtimes.examples`` output, generated once for the session."""
    from runtimes.examples.__main__ import main

    out = tmp_path_factory.mktemp("examples")
    assert main([str(out)]) == 0
    return out
