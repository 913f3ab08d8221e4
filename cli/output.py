"""Human tables by default, JSON for scripts (``--output json``); messages on stderr so
stdout stays parseable."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def emit(data: Any, fmt: str, columns: list[tuple[str, str]] | None = None) -> None:
    """Rows (a list of dicts) or one object; ``columns`` is ``[(key, heading), …]``."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if isinstance(data, list):
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        cols = columns or [(k, k) for k in (data[0].keys() if data else [])]
        for _, heading in cols:
            table.add_column(heading, overflow="fold")
        for row in data:
            table.add_row(*(_cell(_dig(row, key)) for key, _ in cols))
        if not data:
            err.print("(none)")
            return
        out.print(table)
        return
    if isinstance(data, dict):
        keys = [k for k, _ in columns] if columns else list(data)
        width = max((len(k) for k in keys), default=0)
        for key in keys:
            out.print(f"{key.ljust(width)}  {_cell(_dig(data, key))}", markup=False)
        return
    out.print(str(data), markup=False)


def _dig(row: dict, key: str) -> Any:
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def note(message: str) -> None:
    err.print(message, markup=False)
