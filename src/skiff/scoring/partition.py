"""What each Spark task runs: Arrow batches of CSV text in, scored or rejected rows out.

Shipped to the executors as a Spark Connect artifact (with ``skiff.bracelet``),
so it imports only what the executors' venv has: numpy, pandas, pyarrow,
onnxruntime. The ONNX session is built once per Python worker (Spark reuses
them across tasks) and kept by the model's digest; each task then streams its
partition batch by batch, so memory is bounded by the batch size, not the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from skiff.bracelet.features import FeatureSchema
from skiff.scoring.validation import CORRUPT_COLUMN, check_columns

# The model contract of the training notebook's skl2onnx export (serving/model_server/session.py).
INPUT = "features"
OUTPUTS = ("label", "probabilities")

SCORED = "scored"
REJECTED = "rejected"
# Columns added to the input's, in this order.
PREDICTION = "prediction"
PROBABILITY = "probability"
MODEL_VERSION = "model_version"
REASON = "reason"
MALFORMED_LINE = "malformed_line"
OUTCOME = "outcome"

_sessions: dict[str, Any] = {}


def session(model: bytes) -> Any:
    """The ONNX Runtime session of ``model``, built once per Python worker."""
    import onnxruntime as ort

    key = hashlib.sha256(model).hexdigest()
    if key not in _sessions:
        options = ort.SessionOptions()
        # One Spark task per core already: more threads per run would oversubscribe.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _sessions.clear()
        _sessions[key] = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return _sessions[key]


def output_schema(input_columns: list[str]) -> str:
    """The DDL of the rows the tasks return (every input column stays text, as read)."""
    kept = [c for c in input_columns if c != CORRUPT_COLUMN]
    columns = [f"`{c}` string" for c in kept]
    columns += [f"{PREDICTION} int", f"{PROBABILITY} double", f"{MODEL_VERSION} string",
                f"{REASON} string", f"{MALFORMED_LINE} string", f"{OUTCOME} string"]
    return ", ".join(columns)


def score_batch(batch: pa.RecordBatch, schema: FeatureSchema, model: bytes,
                model_version: str) -> pa.RecordBatch:
    present = set(batch.schema.names)
    corrupt = batch.column(CORRUPT_COLUMN) if CORRUPT_COLUMN in present else None
    checked = check_columns(schema, {name: batch.column(name) for name in schema.names}, corrupt)
    n = batch.num_rows
    labels = np.zeros(n, dtype=np.int32)
    probabilities = np.zeros(n, dtype=np.float64)
    if checked.valid.any():
        x = checked.matrix[checked.valid].astype(np.float32)
        label, proba = session(model).run(list(OUTPUTS), {INPUT: x})
        labels[checked.valid] = label
        probabilities[checked.valid] = proba[:, 1]
    invalid = ~checked.valid
    arrays = [batch.column(name) for name in batch.schema.names if name != CORRUPT_COLUMN]
    names = [name for name in batch.schema.names if name != CORRUPT_COLUMN]
    arrays += [
        pa.array(labels, mask=invalid),
        pa.array(probabilities, mask=invalid),
        pa.array([model_version] * n, type=pa.string()),
        pa.array(checked.reasons, type=pa.string()),
        batch.column(CORRUPT_COLUMN) if corrupt is not None else pa.nulls(n, pa.string()),
        pa.array(np.where(checked.valid, SCORED, REJECTED), type=pa.string()),
    ]
    names += [PREDICTION, PROBABILITY, MODEL_VERSION, REASON, MALFORMED_LINE, OUTCOME]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def scorer(model: bytes, schema_doc: dict[str, Any],
           model_version: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function for ``DataFrame.mapInArrow``: the model travels in its closure."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        schema = FeatureSchema.from_json(schema_doc)
        for batch in batches:
            if batch.num_rows:
                yield score_batch(batch, schema, model, model_version)

    return score_partition
