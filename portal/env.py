"""Typed readers for settings that come from environment variables.

Every setting of the portal is read here or in ``portal.settings`` through these helpers, so a
wrong value fails at start-up with an ``ImproperlyConfigured`` that names the variable, says
what it holds and what would be accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


RATE_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


class Env:
    """Reads variables from a mapping (``os.environ`` by default) with type checks."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def str(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise ImproperlyConfigured(f"{name} must be set.")
            return default
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.environ.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off."
        )

    def int(
        self,
        name: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
        return number

    def rate(self, name: str, default: str) -> str:
        """A rate limit ``<count>/<second|minute|hour|day>`` (e.g. ``10/minute``)."""
        value = self.raw(name) or default
        count, _, unit = value.partition("/")
        if not count.strip().isdigit() or int(count) < 1 or unit.strip().lower() not in RATE_UNITS:
            raise ImproperlyConfigured(
                f"{name}={value!r} is not a rate: use <count>/<second|minute|hour|day>, "
                "e.g. 10/minute."
            )
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")
        return value

    def list(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def url(self, name: str, schemes: tuple[str, ...], default: str | None = None) -> str | None:
        """A URL whose scheme is one of ``schemes`` and which names a host (or a path for
        file-like schemes)."""
        value = self.raw(name)
        if value is None:
            return default
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ImproperlyConfigured(
                f"{name} has scheme {parts.scheme or '(none)'!r}; expected one of: "
                f"{', '.join(schemes)} (e.g. {schemes[0]}://host:port/...)."
            )
        if not parts.netloc and not parts.path.strip("/"):
            raise ImproperlyConfigured(f"{name}={value!r} names no host.")
        return value
