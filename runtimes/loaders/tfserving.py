"""TensorFlow SavedModel loader (the ``tfserving`` runtime), on the CPU build of TensorFlow.

Signatures, dtypes and shapes for ``/metadata`` are read from ``saved_model.pb`` itself, so the
answer is the SignatureDef TF-Serving would print. Calls go through the loaded concrete
functions of ``tf.saved_model.load``; string inputs are fed as bytes (``{"b64": ...}`` decoded).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.errors import BadRequest, ModelLoadError
from runtimes.loaders.base import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    Signature,
    TensorSpec,
)
from runtimes.loaders.record import examples_of
from runtimes.loaders.tensor import TensorModel
from runtimes.loaders.tf_examples import serialize_examples

log = logging.getLogger(__name__)

SERVE_TAG = "serve"


def _import_tf(threads: int) -> Any:
    # Quiet TF's C++ start-up chatter before the import; real errors still reach stderr.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # already initialised in this process (tests load several models)
        pass
    no_thread_spinning()
    return tf


def no_thread_spinning() -> None:
    """Let TensorFlow's idle pool threads sleep at once instead of spinning for work.

    Spinning buys a few microseconds on cores of its own; here the event loop, the batching
    thread and TF's pools share a small CPU quota, and a spinning thread takes the core the
    loop needs to answer and parse (flower example, one connection: server CPU per request
    ~20-30% lower without it, p50 ~0.1-0.2 ms lower). TF has no public switch for
    ``ConfigProto.experimental.disable_thread_spinning`` in eager mode, so it is set on the
    eager context before that is initialised; once initialised (or on a TF without these
    attributes) nothing changes.
    """
    try:
        from tensorflow.core.protobuf import config_pb2
        from tensorflow.python.eager import context

        ctx = context.context()
        if ctx._context_handle is not None:  # already initialised: too late, keep it as is
            return
        config = config_pb2.ConfigProto()
        if ctx._config is not None:
            config.CopyFrom(ctx._config)
        config.experimental.disable_thread_spinning = True
        ctx._config = config
    except (ImportError, AttributeError):  # a TF whose internals moved: spinning stays on
        log.warning("cannot turn TensorFlow's thread spinning off in this TF version")


def _tensor_spec(key: str, info: Any) -> TensorSpec:
    shape = None
    if not info.tensor_shape.unknown_rank:
        shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    return TensorSpec(key, _dtype_name(info.dtype), shape, info.name)


def _dtype_name(enum_value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum_value)


def read_signatures(path: Path) -> dict[str, Signature]:
    """The SignatureDefs of the ``serve`` MetaGraph in ``path/saved_model.pb``."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise ModelLoadError(f"{path} is not a SavedModel: saved_model.pb is missing")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(pb.read_bytes())
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{pb} cannot be parsed: {exc}") from None
    graphs = [m for m in proto.meta_graphs if SERVE_TAG in m.meta_info_def.tags]
    if not graphs:
        raise ModelLoadError(f'{pb} has no MetaGraph tagged "{SERVE_TAG}"')
    sigs = {}
    for name, sdef in graphs[0].signature_def.items():
        if name.startswith("__"):  # __saved_model_init_op and similar are not callable
            continue
        sigs[name] = Signature(
            inputs={k: _tensor_spec(k, v) for k, v in sorted(sdef.inputs.items())},
            outputs={k: _tensor_spec(k, v) for k, v in sorted(sdef.outputs.items())},
            method_name=sdef.method_name,
        )
    if not sigs:
        raise ModelLoadError(f"{pb} has no serving signatures")
    return sigs


def tf_error_text(message: str) -> str:
    """The human part of a TF runtime error (the line before ``[[{{node ...}}]]``)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("[[") and i > 0:
            return lines[i - 1]
    return lines[-1] if lines else "invalid argument"


class SavedModel(TensorModel):
    """A TensorFlow SavedModel, one concrete function per signature."""

    runtime = "tfserving"

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__(path, threads)
        self.tf = _import_tf(threads)
        self.signatures = read_signatures(path)
        try:
            self._loaded = self.tf.saved_model.load(str(path), tags=[SERVE_TAG])
        except Exception as exc:
            raise ModelLoadError(
                f"TensorFlow cannot load the SavedModel in {path}: {exc}"
            ) from None
        self._functions = {}
        for name in self.signatures:
            fn = self._loaded.signatures.get(name)
            if fn is None:
                raise ModelLoadError(f'signature "{name}" is in saved_model.pb but not loadable')
            self._functions[name] = fn

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self.tf
        fn = self._functions[signature]
        sig = self.signatures[signature]
        args = {}
        for name, arr in feeds.items():
            dtype = tf.string if sig.inputs[name].is_string else tf.as_dtype(arr.dtype)
            args[name] = tf.constant(arr, dtype=dtype)
        try:
            result = fn(**args)
        except tf.errors.InvalidArgumentError as exc:
            # Bad data the graph rejected (an undecodable JPEG, a wrong shape): the caller's fault.
            raise BadRequest(tf_error_text(exc.message)) from None
        return {name: result[name].numpy() for name in sig.outputs if name in result}

    def _run_examples(self, body: dict[str, Any], method: str) -> dict[str, np.ndarray]:
        """Run a classify/regress signature on the body's examples as serialized tf.Examples."""
        name, sig = self.signature(body.get("signature_name"))
        if sig.method_name != method:
            raise BadRequest(
                f'signature "{name}" has method {sig.method_name}; this verb needs a '
                f"signature with method {method}"
            )
        serialized = serialize_examples(examples_of(body), self.tf)
        (input_key,) = sig.inputs  # classify/regress SignatureDefs have exactly one input
        batch = np.empty(len(serialized), dtype=object)
        batch[:] = serialized
        feeds = {input_key: batch}
        return self.run(name, feeds)

    def classify(self, body: dict[str, Any]) -> dict[str, Any]:
        out = self._run_examples(body, CLASSIFY_METHOD)
        scores, classes = out.get("scores"), out.get("classes")
        rows = len(scores) if scores is not None else len(classes)
        results = []
        for i in range(rows):
            count = scores.shape[1] if scores is not None else classes.shape[1]
            labels = (
                [c.decode("utf-8", "replace") for c in classes[i]]
                if classes is not None
                else [str(j) for j in range(count)]
            )
            values = scores[i].tolist() if scores is not None else [None] * count
            results.append([[label, value] for label, value in zip(labels, values, strict=True)])
        return {"results": results}

    def regress(self, body: dict[str, Any]) -> dict[str, Any]:
        out = self._run_examples(body, REGRESS_METHOD)
        (values,) = out.values()
        return {"results": np.asarray(values, dtype=np.float64).reshape(-1).tolist()}

    def warmup(self) -> None:
        for name, sig in self.signatures.items():
            if sig.method_name != PREDICT_METHOD:
                continue  # classify/regress take serialized tf.Examples, not zeros
            try:
                self.run(name, self.example_feeds(sig))
            except BadRequest as exc:
                # Zero/empty inputs are not always valid (a JPEG decoder rejects b""); the graph
                # is traced and its kernels created all the same, so this is not fatal.
                log.info("warm-up of signature %s with empty inputs: %s", name, exc.message)
