"""Reading Angel's model files: the ``meta`` header and the text matrix formats.

Each matrix folder holds ``meta`` (4-byte big-endian length + UTF-8 JSON) and part files.
Only row 0 of a matrix is the model; later rows are optimizer state and are skipped.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import ModelLoadError

COL_VALUE = "ColIdValueTextRowFormat"
ROW_COL_VALUE = "RowIdColIdValueTextRowFormat"
TEXT_COLUMN = "TextColumnFormat"


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / "meta"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"Angel matrix {folder.name}: cannot read meta: {exc}") from None
    if len(raw) < 4:
        raise ModelLoadError(f"Angel matrix {folder.name}: meta file is truncated")
    (length,) = struct.unpack(">i", raw[:4])
    try:
        return json.loads(raw[4 : 4 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"Angel matrix {folder.name}: meta is not JSON: {exc}") from None


def _parts(folder: Path, meta: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    parts = meta.get("partMetas") or {}
    ordered = sorted(parts.values(), key=lambda p: int(p.get("partId", 0)))
    return [(folder / str(p.get("fileName", p.get("partId"))), p) for p in ordered]


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ModelLoadError(f"Angel matrix file {path}: {exc}") from None


def _row0_col_value(path: Path, part: dict[str, Any], out: np.ndarray) -> None:
    """``col,value`` lines; rows follow each other, each ``elementNum`` lines long."""
    lines = _lines(path)
    rows = sorted((part.get("rowMetas") or {"0": {"rowId": 0}}).values(), key=lambda r: r["rowId"])
    start = 0
    for row in rows:
        count = int(row.get("elementNum", len(lines)))
        if int(row["rowId"]) == 0:
            for line in lines[start : start + count]:
                col, value = line.split(",")
                out[int(col)] = float(value)
            return
        start += count


def _row0_row_col_value(path: Path, out: np.ndarray) -> None:
    for line in _lines(path):
        row, col, value = line.split(",")
        if int(row) == 0:
            out[int(col)] = float(value)


def read_vector(folder: Path) -> np.ndarray:
    """Row 0 of a ``ColIdValue`` or ``RowIdColIdValue`` matrix as a dense float32 vector."""
    meta = read_meta(folder)
    fmt = str(meta.get("formatClassName", "")).rsplit(".", 1)[-1]
    out = np.zeros(int(meta["col"]), dtype=np.float32)
    try:
        for path, part in _parts(folder, meta):
            if fmt == COL_VALUE:
                _row0_col_value(path, part, out)
            elif fmt == ROW_COL_VALUE:
                _row0_row_col_value(path, out)
            else:
                raise ModelLoadError(f"Angel matrix {folder.name}: unsupported format {fmt}")
    except (ValueError, IndexError, KeyError) as exc:
        raise ModelLoadError(f"Angel matrix {folder.name}: malformed data: {exc}") from None
    return out


def read_embedding(folder: Path, num_factors: int) -> np.ndarray:
    """A ``TextColumnFormat`` embedding: ``feature,v0..v(k-1)`` lines -> [features, k]."""
    meta = read_meta(folder)
    fmt = str(meta.get("formatClassName", "")).rsplit(".", 1)[-1]
    if fmt != TEXT_COLUMN:
        raise ModelLoadError(f"Angel embedding {folder.name}: unsupported format {fmt}")
    out = np.zeros((int(meta["col"]), num_factors), dtype=np.float32)
    try:
        for path, _ in _parts(folder, meta):
            for line in _lines(path):
                fields = line.split(",")
                if len(fields) != num_factors + 1:
                    raise ValueError(f"expected {num_factors} factors, got {len(fields) - 1}")
                out[int(fields[0])] = [float(v) for v in fields[1:]]
    except (ValueError, IndexError) as exc:
        raise ModelLoadError(f"Angel embedding {folder.name}: malformed data: {exc}") from None
    return out
