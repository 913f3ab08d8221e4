"""Fault-injection points for tests: ``EMS_FAULT=<point>`` makes the process die right there.

Only tests set ``EMS_FAULT`` (never a deployment). The default action is ``os._exit(137)``, what
a worker killed with SIGKILL looks like; ``EMS_FAULT_MODE=raise`` raises :class:`SimulatedCrash`
(a ``BaseException``, so no ``except Exception`` handler swallows it and open transactions roll
back) for tests that run the worker's code in their own process.
"""

from __future__ import annotations

import os


class SimulatedCrash(BaseException):
    """The worker died at a fault point."""


def point(name: str) -> None:
    wanted = os.environ.get("EMS_FAULT", "")
    if not wanted or name not in {item.strip() for item in wanted.split(",")}:
        return
    if os.environ.get("EMS_FAULT_MODE") == "raise":
        raise SimulatedCrash(name)
    os._exit(137)
