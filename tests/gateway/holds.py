"""Requests the echo upstream holds until the test releases them (``?hold=<key>``).

A module of its own: pytest imports conftest.py as ``conftest`` while tests import it as
``tests.gateway.conftest`` (two copies); this registry must be one object for both.
"""

from __future__ import annotations

import threading

HOLDS: dict[str, threading.Event] = {}


def hold(key: str) -> threading.Event:
    """The event a ``?hold=<key>`` request waits on; ``.set()`` it to let the request finish."""
    return HOLDS.setdefault(key, threading.Event())
