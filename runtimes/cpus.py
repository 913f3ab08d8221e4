"""How many CPUs this process may use: the cgroup quota first, never the host's count.

A container limited to 2 cores on a 64-core host must not start 64 compute threads; that is
what ``os.cpu_count()`` would give, so it is only the last fallback.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def parse_cpu_max(text: str) -> float | None:
    """Parse cgroup v2 ``cpu.max`` (``"200000 100000"`` or ``"max 100000"``) into CPUs."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_cpu_limit(
    cpu_max: Path | None = None, quota: Path | None = None, period: Path | None = None
) -> float | None:
    """The CPU quota of this process's cgroup (v2, then v1), or None when unlimited."""
    cpu_max = cpu_max or CGROUP_V2
    quota = quota or CGROUP_V1_QUOTA
    period = period or CGROUP_V1_PERIOD
    text = _read(cpu_max)
    if text is not None:
        return parse_cpu_max(text)
    q, p = _read(quota), _read(period)
    if q is not None and p is not None and int(q) > 0 and int(p) > 0:
        return int(q) / int(p)
    return None


def available_cpus() -> int:
    """CPUs to size thread pools by: ``EMS_RUNTIME_CPUS``, else cgroup quota, else affinity."""
    override = os.environ.get("EMS_RUNTIME_CPUS")
    if override:
        return max(1, int(override))
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is None:
        return max(1, affinity)
    # A fractional quota (1.5 cores) still lets two threads make progress.
    return max(1, min(affinity, math.ceil(limit)))
