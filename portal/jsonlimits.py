"""JSON with a nesting limit: deep documents are a 400 with a clear message, never a 500.

Python's ``json`` recurses once per level: a body nested a few thousand levels deep raises
``RecursionError`` (a 500 anywhere that only catches ``ValueError``), and one under the
interpreter's limit still makes every recursive validator after it fail the same way. Every
place that parses JSON from a request uses :func:`loads` (or the DRF parser below), which
raises :class:`JSONTooDeep` — a ``ValueError``, so existing ``except ValueError`` handlers give
their usual 400 — past ``EMS_JSON_MAX_DEPTH`` levels.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.forms.fields import InvalidJSONInput
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONTooDeep(ValueError):
    """The document nests objects/arrays deeper than allowed."""


def max_depth() -> int:
    return settings.EMS_JSON_MAX_DEPTH


def too_deep_message(limit: int) -> str:
    return f"JSON nested deeper than {limit} levels (objects and arrays); flatten the document"


def check_depth(value: Any, limit: int | None = None) -> Any:
    """Return ``value`` or raise :class:`JSONTooDeep`; iterative, so any depth is safe."""
    limit = max_depth() if limit is None else limit
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise JSONTooDeep(too_deep_message(limit))
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


def loads(text: str | bytes | bytearray, *, limit: int | None = None) -> Any:
    """``json.loads`` that raises :class:`JSONTooDeep` (a ``ValueError``) for deep documents."""
    limit = max_depth() if limit is None else limit
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(too_deep_message(limit)) from None
    return check_depth(value, limit)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the depth limit: 400 ``{"detail": "JSON parse error - ..."}``."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - {too_deep_message(max_depth())}") from None
        try:
            return check_depth(data)
        except JSONTooDeep as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class JSONFormField(forms.JSONField):
    """Django's form JSONField with the depth limit (a form error, not a 500)."""

    def to_python(self, value):
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(too_deep_message(max_depth()), code="invalid") from None
        try:
            return check_depth(converted)
        except JSONTooDeep as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)
