"""Finding the version to serve in a model folder (TF-Serving's default "latest" policy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtimes.errors import ModelLoadError

# A folder that holds the model itself (no numbered sub-folders) is reported as this version.
UNVERSIONED = "1"


@dataclass(frozen=True)
class ModelVersion:
    """The one version the server loads: its number (as TF-Serving prints it) and folder."""

    version: str
    path: Path


def resolve_version(model_dir: str | Path) -> ModelVersion:
    """Pick the highest numbered sub-folder of ``model_dir``, or ``model_dir`` itself."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelLoadError(f"model directory {root} does not exist or is not a directory")
    numbered = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    if not numbered:
        return ModelVersion(UNVERSIONED, root)
    best = max(numbered, key=lambda p: int(p.name))
    return ModelVersion(str(int(best.name)), best)
