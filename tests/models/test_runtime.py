"""Predictor: one test per fallback cause, hot reload, batch inference; Baseline ring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.baseline import Baseline
from models.registry import ModelRegistry
from models.runtime import Predictor
from models.training import Gates, TrainResult, train_model
from tests.models.test_training import FEATURES, make_frame, onnx_up

SYMBOLS = ["S0USDT", "S1USDT", "S2USDT", "NEWUSDT"]


@pytest.fixture(scope="module")
def model_a() -> TrainResult:
    return train_model(make_frame(3000, seed=31), feature_names=FEATURES, gates=Gates(), ablation=False)


@pytest.fixture(scope="module")
def model_b() -> TrainResult:
    return train_model(make_frame(3000, seed=32), feature_names=FEATURES, gates=Gates(), ablation=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def X() -> np.ndarray:
    return make_frame(len(SYMBOLS), seed=4)[FEATURES].to_numpy()


def production(root: Path, result: TrainResult, *, at: float = 1_763_683_200.0) -> str:
    reg = ModelRegistry(root, clock=lambda: at)
    v = reg.register(result)
    reg.promote(v, cooldown_s=0, force=True)
    return v


def predictor(root: Path, labeled: int = 10_000) -> Predictor:
    p = Predictor(root, min_train_samples=500, labeled_count=lambda: labeled)
    # labels S0: 1,1,0,1 -> 0.75; S1: 0,0 -> 0.0; S2 and NEW unseen -> prior 0.5
    for s, y in [
        ("S0USDT", 1),
        ("S0USDT", 1),
        ("S1USDT", 0),
        ("S0USDT", 0),
        ("S1USDT", 0),
        ("S0USDT", 1),
    ]:
        p.observe_label(s, y)
    return p


BASELINE = np.array([0.75, 0.0, 0.5, 0.5])


def test_model_answers_with_its_version(root: Path, model_a: TrainResult, X: np.ndarray) -> None:
    v = production(root, model_a)
    probs, version, reason = predictor(root).predict(SYMBOLS, X)
    assert (version, reason) == (v, None)
    np.testing.assert_allclose(
        probs,
        model_a.calibrated.predict_proba(X.astype(np.float32).astype(np.float64))[:, 1],
        atol=1e-5,
    )


def test_no_model(root: Path, X: np.ndarray) -> None:
    p = predictor(root)
    probs, version, reason = p.predict(SYMBOLS, X)
    assert (version, reason) == ("baseline", "no_model")
    np.testing.assert_allclose(probs, BASELINE)
    assert p.fallback_counts["no_model"] == 1


def test_too_few_samples(root: Path, model_a: TrainResult, X: np.ndarray) -> None:
    production(root, model_a)
    probs, version, reason = predictor(root, labeled=10).predict(SYMBOLS, X)
    assert (version, reason) == ("baseline", "too_few_samples")
    np.testing.assert_allclose(probs, BASELINE)


def test_corrupt_model_file_on_disk(root: Path, model_a: TrainResult, X: np.ndarray) -> None:
    v = production(root, model_a)
    p = predictor(root)
    assert p.predict(SYMBOLS, X)[1] == v  # loaded while healthy
    path = root / "trained" / f"{v}.onnx"
    raw = bytearray(path.read_bytes())
    raw[100:110] = b"\x00" * 10  # really damage the deployed file
    path.write_bytes(bytes(raw))
    probs, version, reason = p.predict(SYMBOLS, X)
    assert (version, reason) == ("baseline", "corrupt_model")
    np.testing.assert_allclose(probs, BASELINE)
    # a fresh predictor (process restart) sees the same
    assert predictor(root).predict(SYMBOLS, X)[2] == "corrupt_model"


def test_corrupt_model_then_restore_serves_again(root: Path, model_a: TrainResult, X: np.ndarray) -> None:
    v = production(root, model_a)
    reg = ModelRegistry(root)
    reg.backup()
    (root / "trained" / f"{v}.onnx").write_bytes(b"truncated")
    p = predictor(root)
    assert p.predict(SYMBOLS, X)[2] == "corrupt_model"
    reg.restore(v)
    assert p.predict(SYMBOLS, X)[1:] == (v, None)


def test_inference_error_from_wrong_feature_width(root: Path, model_a: TrainResult) -> None:
    production(root, model_a)
    X_bad = np.zeros((len(SYMBOLS), len(FEATURES) + 2))  # a real failure: model expects 5 columns
    probs, version, reason = predictor(root).predict(SYMBOLS, X_bad)
    assert (version, reason) == ("baseline", "inference_error")
    np.testing.assert_allclose(probs, BASELINE)


def test_inference_error_from_the_session(
    root: Path, model_a: TrainResult, X: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    production(root, model_a)
    p = predictor(root)
    p.refresh()

    # Fault injection: an ONNX Runtime failure inside run() (e.g. a kernel error) cannot be
    # provoked with a valid model and valid input, so the session's run is replaced.
    def broken_run(*_args, **_kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")

    monkeypatch.setattr(p._model.scorer.session, "run", broken_run)
    probs, version, reason = p.predict(SYMBOLS, X)
    assert (version, reason) == ("baseline", "inference_error")
    np.testing.assert_allclose(probs, BASELINE)


def test_memory_error(root: Path, model_a: TrainResult, X: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    production(root, model_a)
    p = predictor(root)
    p.refresh()

    # Fault injection: exhausting memory for real would endanger the test machine, so the
    # session's run raises MemoryError the way an allocation failure inside it would.
    def oom_run(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(p._model.scorer.session, "run", oom_run)
    probs, version, reason = p.predict(SYMBOLS, X)
    assert (version, reason) == ("baseline", "memory_error")
    np.testing.assert_allclose(probs, BASELINE)
    monkeypatch.undo()
    assert p.predict(SYMBOLS, X)[2] is None  # recovers on the next batch


def test_hot_reload_picks_up_a_new_promotion(
    root: Path, model_a: TrainResult, model_b: TrainResult, X: np.ndarray
) -> None:
    v_a = production(root, model_a, at=1_763_683_200.0)
    p = predictor(root)
    assert p.predict(SYMBOLS, X)[1] == v_a
    assert p.refresh() is False  # nothing changed: no reload
    v_b = production(root, model_b, at=1_763_683_260.0)
    probs, version, reason = p.predict(SYMBOLS, X)
    assert (version, reason) == (v_b, None)
    np.testing.assert_allclose(probs, onnx_up(model_b.onnx_bytes, X), atol=1e-6)
    ModelRegistry(root).rollback()
    assert p.predict(SYMBOLS, X)[1] == v_a


def test_one_onnx_run_per_batch(root: Path, model_a: TrainResult, monkeypatch: pytest.MonkeyPatch) -> None:
    production(root, model_a)
    p = predictor(root)
    p.refresh()
    session = p._model.scorer.session
    calls: list[int] = []
    real_run = session.run

    def counting_run(names, feeds, *rest):  # spy: records the batch size, then runs for real
        calls.append(next(iter(feeds.values())).shape[0])
        return real_run(names, feeds, *rest)

    monkeypatch.setattr(session, "run", counting_run)
    X = make_frame(64, seed=8)[FEATURES].to_numpy()
    probs, _, reason = p.predict([f"S{i % 3}USDT" for i in range(64)], X)
    assert reason is None and calls == [64] and probs.shape == (64,)


def test_mismatched_batch_is_a_caller_error(root: Path) -> None:
    with pytest.raises(ValueError, match="one row per symbol"):
        predictor(root).predict(["A", "B"], np.zeros((3, 5)))


# ---------------------------------------------------------------- baseline


def test_baseline_is_the_rate_of_the_last_n_labels() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=1300)
    b = Baseline(window=500)
    b.extend(["X"] * len(labels), labels.tolist())
    assert b.prob("X") == pytest.approx(labels[-500:].mean(), abs=1e-12)
    assert b.count("X") == 500
    assert b.prob("never-seen") == 0.5
    with pytest.raises(ValueError, match="must be 0 or 1"):
        b.update("X", 2)
