"""Training pipeline: split leakage, temperature folding inside ONNX, parity, gates, ablation.

Oracles: onnxruntime run directly, scikit-learn metrics, scipy's expit, pandas moments and
close_time arithmetic — never the module's own helpers.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from hypothesis import given, settings
from scipy.special import expit
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.training import (
    Gates,
    NotEnoughData,
    fold_temperature,
    time_split,
    train_model,
)

FEATURES = ["ret_1", "ret_5", "rsi_14", "sent_score", "sent_ema_5m"]
T0 = 1_763_683_200_000
MINUTE = 60_000


def make_frame(n: int = 6000, *, seed: int = 0, noise: bool = False, n_symbols: int = 3) -> pd.DataFrame:
    """Time-ordered rows, several symbols per close_time; label ~ Bernoulli(sigmoid(1.2·x1 − 0.8·x2)).

    x1 is a market feature (ret_1), x2 a sentiment one (sent_score); sent_ema_5m is a noisy copy
    of x2, so the sentiment block carries real signal. ``noise=True`` makes labels independent.
    """
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    logit = 1.2 * x1 - 0.8 * x2
    p = np.full(n, 0.5) if noise else expit(logit)
    df = pd.DataFrame(
        {
            "symbol": [f"S{i % n_symbols}USDT" for i in range(n)],
            "close_time": T0 + MINUTE * (np.arange(n) // n_symbols),
            "ret_1": x1,
            "ret_5": rng.normal(size=n),
            "rsi_14": rng.uniform(0, 100, size=n),
            "sent_score": x2,
            "sent_ema_5m": x2 + rng.normal(scale=1.0, size=n),
            "label": (rng.random(n) < p).astype(int),
        }
    )
    df.loc[rng.random(n) < 0.03, "rsi_14"] = np.nan  # short history -> NaN, imputed by the model
    return df


def onnx_up(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    """P(up) straight from onnxruntime (independent of models.onnx_export)."""
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"features": X.astype(np.float32)})
    proba = next(o for o in out if o.ndim == 2)
    return proba[:, 1].astype(np.float64)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame(6000, seed=1)


@pytest.fixture(scope="module")
def result(frame: pd.DataFrame):
    return train_model(frame, feature_names=FEATURES, gates=Gates(), random_state=0)


def rows_in(df: pd.DataFrame, span: list[int]) -> pd.DataFrame:
    return df[(df["close_time"] >= span[0]) & (df["close_time"] <= span[1])]


# ---------------------------------------------------------------- time split


@settings(max_examples=60, deadline=None)
@given(
    times=st.lists(st.integers(0, 400), min_size=10, max_size=300),
    horizon=st.integers(0, 30),
)
def test_time_split_blocks_never_share_a_label_window(times: list[int], horizon: int) -> None:
    ct = np.array(times, dtype=np.int64) * 1000
    h = horizon * 1000
    tr, cal, val = time_split(ct, h, (0.6, 0.2, 0.2))
    parts = [ct[tr], ct[cal], ct[val]]
    # disjoint, and every kept index is a real row
    all_idx = np.concatenate([tr, cal, val])
    assert len(np.unique(all_idx)) == len(all_idx)
    # rows a < b from different blocks: label window [t_a, t_a + h] ends before t_b
    for a in range(3):
        for b in range(a + 1, 3):
            if len(parts[a]) and len(parts[b]):
                assert parts[a].max() + h < parts[b].min()
    # purging drops only rows whose window reaches the next block's boundary (the close_time
    # at the cut position; conservative when a whole block is purged, never a leak)
    dropped = np.setdiff1d(np.arange(len(ct)), all_idx)
    sorted_ct = np.sort(ct)
    cuts = [int(np.floor(f * len(ct) + 1e-9)) for f in (0.6, 0.8)]
    boundaries = [sorted_ct[c] for c in cuts if c < len(ct)]
    for i in dropped:
        assert any(ct[i] < b <= ct[i] + h for b in boundaries)


def test_time_split_fractions_and_purge_gap_on_candle_grid() -> None:
    ct = T0 + MINUTE * (np.arange(3000) // 3)  # 1000 close_times, 3 symbols each
    h = 5 * MINUTE
    tr, cal, val = time_split(ct, h, (0.6, 0.2, 0.2))
    # 5-candle horizon purges the last 5 close_times (15 rows) before each boundary
    assert (len(tr), len(cal), len(val)) == (1800 - 15, 600 - 15, 600)
    assert ct[cal].min() - ct[tr].max() == 6 * MINUTE  # gap > horizon
    assert ct[val].min() - ct[cal].max() == 6 * MINUTE


def test_time_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        time_split(np.arange(10), 0, (0.5, 0.2, 0.2))


def test_trained_splits_do_not_leak(frame: pd.DataFrame, result) -> None:
    h = result.horizon_candles * result.interval_ms
    tr, cal, val = (result.time_range[k] for k in ("train", "calibration", "validation"))
    assert tr[1] + h < cal[0] and cal[1] + h < val[0]
    # the counts are the rows inside each span; together with the purged rows they are all rows
    n_tr, n_cal, n_val = (len(rows_in(frame, s)) for s in (tr, cal, val))
    assert (n_tr, n_cal, n_val) == (
        result.counts["train"],
        result.counts["calibration"],
        result.counts["validation"],
    )
    assert n_tr + n_cal + n_val + result.counts["purged"] == len(frame)
    assert n_val == pytest.approx(0.2 * len(frame), abs=10)


# ---------------------------------------------------------------- the trained model


def test_signal_passes_gates_and_beats_baseline(frame: pd.DataFrame, result) -> None:
    assert result.passed and result.gate_failures == []
    val = rows_in(frame, result.time_range["validation"])
    train = rows_in(frame, result.time_range["train"])
    p = onnx_up(result.onnx_bytes, val[FEATURES].to_numpy())
    y = val["label"].to_numpy()
    assert result.roc_auc == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert result.brier_prod == pytest.approx(brier_score_loss(y, p), abs=1e-9)
    assert result.roc_auc > 0.75
    # baseline = per-symbol training base rate, computed here with pandas
    rate = train.groupby("symbol")["label"].mean()
    baseline_brier = brier_score_loss(y, val["symbol"].map(rate).to_numpy())
    assert result.baseline_brier == pytest.approx(baseline_brier, abs=1e-12)
    assert result.brier_prod < baseline_brier - 0.03
    assert result.beats_baseline


def test_onnx_matches_sklearn_on_fresh_rows_with_nans(result) -> None:
    X = make_frame(2000, seed=99)[FEATURES].to_numpy(copy=True)
    X[::7, 0] = np.nan  # imputation must be inside the exported graph
    X32 = X.astype(np.float32)
    p_onnx = onnx_up(result.onnx_bytes, X32)
    p_sk = result.calibrated.predict_proba(X32.astype(np.float64))[:, 1]
    assert np.max(np.abs(p_onnx - p_sk)) <= 1e-5
    assert result.parity_max_abs_diff <= 1e-5


def test_temperature_is_folded_into_the_onnx_graph(result) -> None:
    X = make_frame(1000, seed=7)[FEATURES].to_numpy().astype(np.float32)
    logits = result.pipeline.decision_function(X.astype(np.float64))  # uncalibrated model
    expected = expit(logits / result.temperature)
    np.testing.assert_allclose(onnx_up(result.onnx_bytes, X), expected, atol=1e-5)


def test_temperature_minimises_calibration_log_loss_with_a_shrunk_model(
    frame: pd.DataFrame,
) -> None:
    # Heavy L2 shrinks the logits, so the fitted T must be well below 1 and must undo it.
    def shrunk(rs: int) -> Pipeline:
        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("clf", LogisticRegression(C=2e-4, random_state=rs)),
            ]
        )

    res = train_model(
        frame,
        feature_names=FEATURES,
        gates=Gates(),
        estimator_factory=shrunk,
        ablation=False,
    )
    assert res.temperature < 0.5
    cal = rows_in(frame, res.time_range["calibration"])
    z = res.pipeline.decision_function(cal[FEATURES].to_numpy(np.float32).astype(np.float64))
    y = cal["label"].to_numpy()

    def loss(T: float) -> float:
        return log_loss(y, expit(z / T), labels=[0, 1])

    T = res.temperature
    assert loss(T) <= min(loss(T * 1.02), loss(T / 1.02))
    assert loss(T) < loss(1.0) - 0.01
    X = cal[FEATURES].to_numpy()
    np.testing.assert_allclose(onnx_up(res.onnx_bytes, X), expit(z / T), atol=1e-5)
    assert res.metrics["uncalibrated"]["ece"] > res.ece_prod


def test_fold_temperature_refuses_non_linear_estimators() -> None:
    from sklearn.tree import DecisionTreeClassifier

    tree = Pipeline([("clf", DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]))])
    with pytest.raises(TypeError, match="coef_ and intercept_"):
        fold_temperature(tree, 2.0)


def test_feature_moments_are_training_split_moments(frame: pd.DataFrame, result) -> None:
    train = rows_in(frame, result.time_range["train"])[FEATURES].astype(np.float32).astype(np.float64)
    for name in FEATURES:
        assert result.train_mean[name] == pytest.approx(train[name].mean(), rel=1e-9)
        assert result.train_std[name] == pytest.approx(train[name].std(ddof=0), rel=1e-9)


def test_ablation_reports_both_variants(frame: pd.DataFrame, result) -> None:
    abl = result.ablation
    assert abl is not None
    assert abl["dropped_features"] == ["sent_score", "sent_ema_5m"]
    assert abl["with_sentiment"]["roc_auc"] == pytest.approx(result.roc_auc)
    # without x2 the model loses real signal: lower AUC, higher Brier
    assert abl["without_sentiment"]["roc_auc"] < abl["with_sentiment"]["roc_auc"] - 0.02
    assert abl["without_sentiment"]["brier"] > abl["with_sentiment"]["brier"]
    assert abl["without_sentiment"]["n_features"] == 3


def test_include_sentiment_false_drops_sent_columns(frame: pd.DataFrame) -> None:
    res = train_model(frame, feature_names=FEATURES, gates=Gates(min_auc=0.5), include_sentiment=False)
    assert res.feature_names == ("ret_1", "ret_5", "rsi_14")
    assert res.ablation is None


def test_progress_is_reported_in_order(frame: pd.DataFrame) -> None:
    seen: list[tuple[float, str]] = []
    train_model(
        frame,
        feature_names=FEATURES,
        gates=Gates(),
        ablation=False,
        progress=lambda f, s: seen.append((f, s)),
    )
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(seen) >= 6


# ---------------------------------------------------------------- failures


def test_noise_labels_fail_the_gates() -> None:
    res = train_model(
        make_frame(3000, seed=5, noise=True),
        feature_names=FEATURES,
        gates=Gates(),
        ablation=False,
    )
    assert not res.passed
    assert any("INITIAL_MODEL_MIN_AUC" in msg for msg in res.gate_failures)


def test_not_enough_data_names_count_and_minimum() -> None:
    df = make_frame(600, seed=2)
    df.loc[df.index[:101], "label"] = np.nan  # unlabeled rows do not count
    with pytest.raises(NotEnoughData, match="499 labeled rows.*MIN_TRAIN_SAMPLES=500") as info:
        train_model(df, feature_names=FEATURES, gates=Gates(), min_train_samples=500)
    assert (info.value.count, info.value.minimum) == (499, 500)
    # exactly the minimum is enough
    df = make_frame(600, seed=2)
    df.loc[df.index[:100], "label"] = np.nan
    res = train_model(
        df,
        feature_names=FEATURES,
        gates=Gates(min_auc=0.0, max_ece=1.0),
        min_train_samples=500,
    )
    assert res.counts["labeled"] == 500


def test_missing_feature_column_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="sent_d1"):
        train_model(frame, feature_names=[*FEATURES, "sent_d1"], gates=Gates())
