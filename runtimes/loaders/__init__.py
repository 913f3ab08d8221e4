"""One loader per runtime, imported lazily so an image only needs its own runtime's libraries."""

from __future__ import annotations

import importlib
from pathlib import Path

from runtimes.loaders.base import Model

# runtime -> (module, class); each module is imported only when that runtime is served.
LOADERS: dict[str, tuple[str, str]] = {
    "tfserving": ("runtimes.loaders.tfserving", "SavedModel"),
    "pmml": ("runtimes.loaders.pmml", "PmmlModel"),
    "openvino": ("runtimes.loaders.openvino", "OpenVinoModel"),
    "tensorrt": ("runtimes.loaders.tensorrt", "TensorRtModel"),
    "angel": ("runtimes.loaders.angel", "AngelModel"),
}


def load_model(runtime: str, path: Path, threads: int) -> Model:
    """Load the model in ``path`` with the loader for ``runtime``."""
    module_name, class_name = LOADERS[runtime]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(path, threads)
