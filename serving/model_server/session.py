"""One ONNX Runtime session: the only module that imports numpy and onnxruntime.

The model contract (the training notebook's skl2onnx export): input ``features``
float32 ``[N, len(schema)]`` in the schema's order with NaN for missing values;
outputs ``label`` int64 ``[N]`` and ``probabilities`` float32 ``[N, 2]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

INPUT = "features"
OUTPUTS = ("label", "probabilities")


class ModelContractError(ValueError):
    """The ONNX graph does not have the inputs and outputs the server relies on."""


class OnnxPredictor:
    """Thread-safe: ONNX Runtime allows concurrent ``run`` calls on one session."""

    def __init__(self, onnx_bytes: bytes, width: int) -> None:
        options = ort.SessionOptions()
        # Two workers with a few threads each on a small machine: one intra-op
        # thread per run avoids oversubscribing cores for a 13-column model.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.width = width
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if INPUT not in inputs:
            raise ModelContractError(f"the model has no input {INPUT!r} (it has {sorted(inputs)})")
        shape = inputs[INPUT].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            raise ModelContractError(f"input {INPUT!r} has shape {shape}; the schema has {width} features")
        missing = set(OUTPUTS) - outputs
        if missing:
            raise ModelContractError(f"the model lacks outputs {sorted(missing)} (it has {sorted(outputs)})")

    def predict(self, rows: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
        """(class, probability of class 1) for each row."""
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.width)
        labels, probabilities = self._session.run(list(OUTPUTS), {INPUT: x})
        return [(int(lab), float(p[1])) for lab, p in zip(labels, probabilities, strict=True)]
