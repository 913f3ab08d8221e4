"""Model-format validation per runtime, before a version is accepted.

A folder is valid when it holds the model itself, or when every numbered version folder in it
(``1/``, ``2/``, … as TF-Serving lays them out) holds a valid model. Django-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models_repo.validation.folder import LocalFolder, ModelFolder, StorageFolder
from models_repo.validation.formats import VALIDATORS, decode_angel_meta

__all__ = [
    "FORMAT_LABELS",
    "LocalFolder",
    "ModelFolder",
    "StorageFolder",
    "ValidationResult",
    "decode_angel_meta",
    "validate_folder",
]

FORMAT_LABELS = {
    "saved_model": "TensorFlow SavedModel",
    "pmml": "PMML",
    "openvino": "OpenVINO IR",
    "tensorrt": "TensorRT engine",
    "angel": "Angel model",
    "custom": "custom format",
}


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    messages: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return " ".join(self.messages)


def validate_folder(model_format: str, folder: ModelFolder) -> ValidationResult:
    try:
        check = VALIDATORS[model_format]
    except KeyError:
        raise ValueError(f"unknown model format {model_format!r}") from None
    label = FORMAT_LABELS[model_format]
    if not folder.files:
        return ValidationResult(False, [f"Not a valid {label}: the model folder is empty."])
    problems = check(folder)
    if not problems:
        return ValidationResult(True, [])
    _, folders = folder.top()
    versions = sorted((name for name in folders if name.isdigit()), key=int)
    if versions:
        version_problems = []
        for version in versions:
            version_problems += [f"{version}/: {p}" for p in check(folder.sub(version))]
        if not version_problems:
            return ValidationResult(True, [])
        problems = version_problems
    return ValidationResult(False, [f"Not a valid {label}: " + " ".join(problems)])
