"""Leave out the mutants that cannot tell anything:
- those inside type annotations (every checked module has ``from __future__ import
  annotations``: annotations are never evaluated, so ``str | None`` -> ``str + None`` is an
  equivalent mutant);
- where the config names functions (``[ems-scope] functions``), those outside them. By name,
  not by line, so edits do not shift it."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult


def ranges(tree: ast.Module, names: set[str]) -> list[tuple[int, int]]:
    return [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.name in names
    ]


def annotations(tree: ast.Module) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation in the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
    return [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found]


def main(config_path: str, db_path: str) -> None:
    config = tomllib.loads(Path(config_path).read_text())
    names = set(config.get("ems-scope", {}).get("functions", []))
    module = Path(config["cosmic-ray"]["module-path"])
    tree = ast.parse(module.read_text())
    missing = names - {n.name for n in ast.walk(tree) if hasattr(n, "name")}
    if missing:
        sys.exit(f"[mutation] {module}: no function named {sorted(missing)}")
    keep = ranges(tree, names) if names else [(1, 10**9)]
    typing = annotations(tree)
    skipped = []
    with use_db(db_path, WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            starts = [tuple(m.start_pos) for m in item.mutations]
            in_scope = any(lo <= pos[0] <= hi for pos in starts for lo, hi in keep)
            in_annotation = all(any(a <= pos < b for a, b in typing) for pos in starts)
            if not in_scope or in_annotation:
                skipped.append(item.job_id)
        if skipped:
            db.set_multiple_results(
                skipped,
                WorkResult(output="left out by scope.py", worker_outcome=WorkerOutcome.SKIPPED),
            )
    where = f"outside {sorted(names)} or " if names else ""
    print(f"[mutation] {module}: {len(skipped)} mutants {where}in annotations left out")


if __name__ == "__main__":
    main(*sys.argv[1:3])
