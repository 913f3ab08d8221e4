"""Write every example model into OUT_DIR: ``python -m runtimes.examples OUT_DIR``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runtimes.examples.flower import write_flower
from runtimes.examples.openvino_example import write_openvino
from runtimes.examples.pmml_example import write_pmml

WRITERS = {"flower": write_flower, "openvino": write_openvino, "pmml": write_pmml}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtimes.examples", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--only", choices=sorted(WRITERS), action="append")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(WRITERS):
        started = time.perf_counter()
        info = WRITERS[name](args.out_dir)
        print(f"{name}: {time.perf_counter() - started:.1f}s {info}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
