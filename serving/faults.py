"""Fault-injection points for tests: ``EMS_FAULT=<point>`` makes the process die right there.

Only tests set ``EMS_FAULT`` (never a deployment). The default action is ``os._exit(137)``, what
a worker killed with SIGKILL looks like; ``EMS_FAULT_MODE=raise`` raises :class:`SimulatedCrash`
(a ``BaseException``, so no ``except Exception`` handler swallows it and open transactions roll
back) for tests that run the worker's code in their own process; ``EMS_FAULT_MODE=pause``
writes ``<pid> <point>`` to the file ``EMS_FAULT_MARKER`` and waits there for ever, so a test
can kill the real worker process (``kill -9``) at exactly that point. ``EMS_FAULT_SKIP=<n>`` lets
the point pass ``n`` times in this process first (to die in the middle of a batch job).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class SimulatedCrash(BaseException):
    """The worker died at a fault point."""


_passed: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get("EMS_FAULT", "")
    if not wanted or name not in {item.strip() for item in wanted.split(",")}:
        return
    skip = int(os.environ.get("EMS_FAULT_SKIP", "0") or 0)
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] <= skip:
        return
    mode = os.environ.get("EMS_FAULT_MODE")
    if mode == "raise":
        raise SimulatedCrash(name)
    if mode == "pause":
        marker = os.environ.get("EMS_FAULT_MARKER")
        if marker:
            Path(marker).write_text(f"{os.getpid()} {name}\n")
        while True:  # the test kills this process here
            time.sleep(3600)
    os._exit(137)
