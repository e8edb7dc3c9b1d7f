"""scikit-learn pipeline -> ONNX bytes, and the ONNX Runtime scorer that serves them.

The graph has one float32 input named ``features`` of shape ``[None, n_features]`` and a
``probabilities`` output ``[N, 2]`` (no ZipMap, so the output is a plain tensor and one
``run`` scores the whole batch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

INPUT_NAME = "features"
PROBA_OUTPUT = "probabilities"


def to_onnx_bytes(pipeline: object, n_features: int, *, target_opset: int | None = None) -> bytes:
    """Convert a fitted binary-classifier ``Pipeline`` to a serialized ONNX model."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    steps = getattr(pipeline, "steps", None)
    clf = steps[-1][1] if steps else pipeline
    model = convert_sklearn(
        pipeline,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(clf): {"zipmap": False}},
        target_opset=target_opset,
    )
    return model.SerializeToString()


class OnnxScorer:
    """ONNX Runtime session over a model made by ``to_onnx_bytes``.

    ``session`` is public on purpose: the runtime tests inject inference faults by
    replacing ``session.run`` (faults that cannot be caused for real in a test).
    """

    def __init__(self, model: bytes | str | os.PathLike[str], *, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # One thread per session: the flow already runs one worker per core.
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(Path(model))
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"expected an ONNX model with 1 input, got {len(inputs)}")
        self.input_name: str = inputs[0].name
        width = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
        self.n_features: int | None = width if isinstance(width, int) else None
        names = [o.name for o in self.session.get_outputs()]
        if PROBA_OUTPUT not in names:
            raise ValueError(f"ONNX model has no {PROBA_OUTPUT!r} output; outputs are {names}")

    def predict_proba_up(self, X: np.ndarray) -> np.ndarray:
        """P(label = 1) per row, one ``run`` for the whole batch; float64 1-D."""
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        if X32.ndim != 2:
            raise ValueError(f"features must be 2-D (rows, features), got shape {X32.shape}")
        if self.n_features is not None and X32.shape[1] != self.n_features:
            raise ValueError(f"model expects {self.n_features} features per row, got {X32.shape[1]}")
        if len(X32) == 1:
            # ONNX Runtime computes a single row on another kernel (GEMV), whose result can differ
            # in the last float32 bit from the same row inside a batch: scored as two rows, a
            # candle's probability does not depend on how many candles closed with it (replay ==
            # live, which trading decisions need).
            proba = self.session.run([PROBA_OUTPUT], {self.input_name: np.repeat(X32, 2, axis=0)})[0][:1]
        else:
            proba = self.session.run([PROBA_OUTPUT], {self.input_name: X32})[0]
        return np.asarray(proba, dtype=np.float64)[:, 1]
