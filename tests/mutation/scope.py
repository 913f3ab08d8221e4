"""Keep only the mutants inside the functions a module's config names (``[ems-scope]
functions``); the rest are marked skipped. By name, not by line, so edits do not shift it."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult


def ranges(path: Path, names: set[str]) -> list[tuple[int, int]]:
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.name in names
    ]


def main(config_path: str, db_path: str) -> None:
    config = tomllib.loads(Path(config_path).read_text())
    names = set(config.get("ems-scope", {}).get("functions", []))
    if not names:
        return
    module = Path(config["cosmic-ray"]["module-path"])
    keep = ranges(module, names)
    missing = names - {
        n.name for n in ast.walk(ast.parse(module.read_text())) if hasattr(n, "name")
    }
    if missing:
        sys.exit(f"[mutation] {module}: no function named {sorted(missing)}")
    skipped = []
    with use_db(db_path, WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            lines = [m.start_pos[0] for m in item.mutations]
            if not any(start <= line <= end for line in lines for start, end in keep):
                skipped.append(item.job_id)
        if skipped:
            db.set_multiple_results(
                skipped,
                WorkResult(output="outside [ems-scope]", worker_outcome=WorkerOutcome.SKIPPED),
            )
    print(f"[mutation] {module}: {len(skipped)} mutants outside {sorted(names)} left out")


if __name__ == "__main__":
    main(*sys.argv[1:3])
