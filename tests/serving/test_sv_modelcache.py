"""The node's model cache: filled once, atomically, world-readable, garbage-collected."""

from __future__ import annotations

import stat
import threading
import time

import pytest

from serving.modelcache import ModelCache

DIGEST = "ab" * 32


def test_filled_once_even_with_concurrent_fillers(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    calls = []
    barrier = threading.Barrier(5)

    def fill(dest):
        calls.append(1)
        dest.mkdir()
        (dest / "model.bin").write_bytes(b"x" * 1000)
        time.sleep(0.05)

    results = []

    def run():
        barrier.wait()
        results.append(cache.ensure(DIGEST, fill))

    threads = [threading.Thread(target=run) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and (results[0] / "model.bin").read_bytes() == b"x" * 1000
    assert len(calls) == 1  # five callers at once, one fill: the others waited and reused it
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".lock-")] == [
        DIGEST
    ]  # no temp dirs left
    cache.ensure(DIGEST, fill)
    assert len(calls) == 1  # filled entries are reused
    mode = (results[0] / "model.bin").stat().st_mode
    assert mode & stat.S_IROTH and results[0].stat().st_mode & stat.S_IXOTH


def test_a_failed_fill_leaves_nothing(tmp_path):
    cache = ModelCache(tmp_path / "cache")

    def boom(dest):
        dest.mkdir()
        (dest / "half").write_text("x")
        raise OSError("storage went away")

    with pytest.raises(OSError, match="went away"):
        cache.ensure(DIGEST, boom)
    left = [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".lock-")]
    assert cache.path(DIGEST) is None and left == []


def test_gc_removes_unused_entries_only(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    other = "cd" * 32
    for digest in (DIGEST, other):
        cache.ensure(digest, lambda dest: (dest.mkdir(), (dest / "f").write_text("1")))
    assert cache.gc({DIGEST}, min_age=3600) == []  # recently used: kept
    assert cache.gc({DIGEST}, min_age=0) == [other]
    assert cache.entries() == [DIGEST]
