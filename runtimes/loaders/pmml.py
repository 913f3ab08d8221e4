"""PMML loader: JPMML-Evaluator (the reference Java evaluator) in-process through JPype.

Rows are named-field objects (``{"x1": 5.1, ...}``) or positional lists mapped, in order, to
the model's active fields. Each prediction holds the target under its own name, typed as its
DataField says (JPMML decodes it), and every OutputField under its declared name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

# defusedxml: PMML comes from users; no entity expansion bombs in the loader.
from defusedxml import ElementTree as SafeET

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders.base import DEFAULT_SIGNATURE, Signature, TensorSpec
from runtimes.loaders.record import RecordModel, examples_of

log = logging.getLogger(__name__)

# PMML dataType -> TF dtype name for /metadata.
PMML_DTYPES = {
    "double": "DT_DOUBLE",
    "float": "DT_FLOAT",
    "integer": "DT_INT64",
    "boolean": "DT_BOOL",
    "string": "DT_STRING",
}
SCALAR_TYPES = (int, float, str, bool, type(None))


def find_pmml(path: Path) -> Path:
    files = sorted(path.glob("*.pmml")) + sorted(path.glob("*.xml"))
    if not files:
        raise ModelLoadError(f"no .pmml file in {path}")
    if len(files) > 1:
        names = ", ".join(f.name for f in files)
        raise ModelLoadError(f"{path} holds several PMML files ({names}); keep exactly one")
    return files[0]


def scan_pmml(pmml_file: Path) -> tuple[set[str], dict[str, str]]:
    """DataField names, and OutputField name -> class label of ``feature="probability"`` ones."""
    data_fields, probabilities = set(), {}
    try:
        for _, elem in SafeET.iterparse(pmml_file):
            tag = elem.tag.rsplit("}", 1)[-1]
            if tag == "DataField":
                data_fields.add(elem.get("name", ""))
            elif (
                tag == "OutputField"
                and elem.get("feature") == "probability"
                and elem.get("value") is not None
            ):
                probabilities[elem.get("name", "")] = elem.get("value", "")
    except SafeET.ParseError as exc:
        raise ModelLoadError(f"{pmml_file.name} is not well-formed XML: {exc}") from None
    return data_fields, probabilities


def _spec(field: Any) -> TensorSpec:
    name = str(field.getName())
    return TensorSpec(name, PMML_DTYPES.get(str(field.getDataType()), "DT_STRING"), (None,), name)


def _plain(value: Any) -> Any:
    """JSON-ready value (JPMML already decodes to Python types; anything else becomes text)."""
    return value if isinstance(value, SCALAR_TYPES) else str(value)


def _start_jvm() -> None:
    """Start the in-process JVM with -Xrs: without it the JVM installs its own SIGTERM handler,
    which exits the process at once instead of letting the server drain in-flight requests."""
    import jpype
    from jpmml_evaluator import _classpath

    if not jpype.isJVMStarted():
        jpype.startJVM("-Xrs", classpath=_classpath(user_classpath=[]))


class PmmlModel(RecordModel):
    """One PMML document evaluated by JPMML-Evaluator."""

    runtime = "pmml"

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(path, threads)
        self.file = find_pmml(path)
        scan_pmml(self.file)  # a clear message for broken XML before the JVM starts
        try:
            from jpmml_evaluator import make_evaluator
            from jpmml_evaluator.jpype import JPypeBackend
        except ImportError as exc:
            raise ModelLoadError(
                f"the PMML runtime needs jpmml_evaluator and JPype1: {exc}"
            ) from None
        try:
            _start_jvm()
            self.evaluator = make_evaluator(str(self.file), backend=JPypeBackend()).verify()
        except Exception as exc:  # JavaError, JVM start failures
            raise ModelLoadError(f"JPMML cannot load {self.file.name}: {exc}") from None
        self.active = [str(f.getName()) for f in self.evaluator.getInputFields()]
        self.targets = {str(f.getName()): f for f in self.evaluator.getTargetFields()}
        target_optypes = {str(f.getOpType()) for f in self.targets.values()}
        self.kind = (
            "classification"
            if "categorical" in target_optypes or ("ordinal" in target_optypes)
            else "regression"
        )
        self.active_set = set(self.active)
        self.data_fields, self.probabilities = scan_pmml(self.file)
        outputs = [_spec(f) for f in self.evaluator.getTargetFields()]
        outputs += [_spec(f) for f in self.evaluator.getOutputFields()]
        self.signatures = {
            DEFAULT_SIGNATURE: Signature(
                inputs={s.name: s for s in map(_spec, self.evaluator.getInputFields())},
                outputs={s.name: s for s in outputs},
            )
        }

    def is_record(self, value: dict[str, Any]) -> bool:
        # {"x1": 1.0, ...} (scalars) is one record; {"x1": [..], ...} is columns.
        return not any(isinstance(v, list) for v in value.values())

    def _arguments(self, index: int, record: Any) -> dict[str, Any]:
        if isinstance(record, dict):
            # As JPMML-Evaluator and Openscoring do: a record may carry fields the model does
            # not use (DataFields outside the MiningSchema, or columns a converter pruned, like
            # sepal_width of an sklearn2pmml tree); they are ignored. Every active field must be
            # there (null is a missing value the model's own treatment handles).
            missing = [name for name in self.active if name not in record]
            if missing:
                ignored = sorted(set(record) - self.active_set)
                hint = f"; ignored field(s) the model does not use: {', '.join(ignored)}"
                raise BadRequest(
                    f"instance {index} is missing active field(s) {', '.join(missing)}; "
                    f"the model's active fields are {', '.join(self.active)}"
                    + (hint if ignored else "")
                )
            args = {name: record[name] for name in self.active}
        elif isinstance(record, list):
            if len(record) != len(self.active):
                raise BadRequest(
                    f"instance {index} has {len(record)} values; the model has "
                    f"{len(self.active)} active fields ({', '.join(self.active)})"
                )
            args = dict(zip(self.active, record, strict=True))
        else:
            raise BadRequest(f"instance {index} must be an object of fields or a list of values")
        for name, value in args.items():
            if not isinstance(value, SCALAR_TYPES):
                raise BadRequest(f'field "{name}" of instance {index} must be a scalar value')
        return args

    def score(self, records: list[Any]) -> list[dict[str, Any]]:
        from jpmml_evaluator import JavaError

        results = []
        for i, record in enumerate(records):
            args = self._arguments(i, record)
            try:
                result = self.evaluator.evaluate(args)
            except JavaError as exc:
                # Evaluation errors are about the values given (invalid, out of domain).
                raise BadRequest(f"instance {i}: {exc}") from None
            results.append({k: _plain(v) for k, v in result.items()})
        return results

    def classify(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.kind != "classification":
            raise BadRequest("this PMML model is a regression model: use :regress")
        results = []
        for pred in self.score(examples_of(body)):
            pairs = [[label, pred[name]] for name, label in self.probabilities.items()]
            if not pairs:  # no probability outputs: the predicted class with score 1
                pairs = [[str(pred[next(iter(self.targets))]), 1.0]]
            results.append(pairs)
        return {"results": results}

    def regress(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.kind != "regression":
            raise BadRequest("this PMML model is a classification model: use :classify")
        target = next(iter(self.targets))
        return {"results": [pred[target] for pred in self.score(examples_of(body))]}

    def warmup(self) -> None:
        try:
            self.evaluator.evaluate({})  # JIT-compiles the evaluation path once
        except Exception as exc:  # missing values may be invalid for this model; not fatal
            log.info("PMML warm-up with an empty record: %s", exc)
