"""Per-module score from a cosmic-ray session: mutants, killed, survived, and the survivors."""

from __future__ import annotations

import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome


def main(module: str, db_path: str, survivors_path: str) -> None:
    killed = survived = skipped = incompetent = 0
    lines = []
    with use_db(db_path, WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                skipped += 1
            elif result.worker_outcome != WorkerOutcome.NORMAL:
                incompetent += 1  # the mutant did not even import: counts as killed
                killed += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                survived += 1
                for mutation in item.mutations:
                    lines.append(
                        f"{mutation.module_path}:{mutation.start_pos[0]} "
                        f"{mutation.operator_name} #{mutation.occurrence}\n{result.diff}\n"
                    )
            else:
                killed += 1
    with use_db(db_path, WorkDB.Mode.open) as db:
        pending = sum(1 for _ in db.pending_work_items)
    total = killed + survived
    score = 100.0 * killed / total if total else 0.0
    with open(survivors_path, "w") as out:
        out.write("".join(lines))
    print(
        f"[mutation] {module}: {total} mutants, {killed} killed, {survived} survived, "
        f"{skipped} filtered, {pending} not run (budget), score {score:.1f}%  "
        f"(survivors: {survivors_path})"
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
