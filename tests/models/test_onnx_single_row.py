"""One row scored alone equals the same row inside a batch, bit for bit.

ONNX Runtime runs a 1-row input through another kernel (GEMV) than a batch (GEMM); they can
round the last float32 bit differently, and a trading decision on p ≥ threshold must not
depend on how many candles closed in the same activation (replay == live). The one place
that handles it is `OnnxScorer.predict_proba_up` (models/onnx_export.py); the model stage
and the Predictor go through it.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.onnx_export import OnnxScorer
from models.training import Gates, TrainResult, train_model
from tests.models.test_training import FEATURES, make_frame


@pytest.fixture(scope="module")
def model() -> TrainResult:
    return train_model(make_frame(3000, seed=41), feature_names=FEATURES, gates=Gates(), ablation=False)


def test_one_row_equals_the_row_in_a_batch(model: TrainResult) -> None:
    scorer = OnnxScorer(model.onnx_bytes)
    X = make_frame(200, seed=5)[FEATURES].to_numpy().astype(np.float32)
    batch = scorer.predict_proba_up(X)
    alone = np.concatenate([scorer.predict_proba_up(X[i : i + 1]) for i in range(len(X))])
    assert alone.dtype == batch.dtype == np.float64
    assert alone.tobytes() == batch.tobytes()  # bit for bit, not allclose
    for k in (2, 3, 17):  # and any other batch size
        part = np.concatenate([scorer.predict_proba_up(X[i : i + k]) for i in range(0, len(X), k)])
        assert part.tobytes() == batch.tobytes()


def test_model_stage_has_no_second_workaround() -> None:
    """The model stage hands a 1-row batch to the Predictor as it is (one fix, in models/)."""
    import inspect

    from dataflows import model_stage

    assert "np.vstack([X, X])" not in inspect.getsource(model_stage)
