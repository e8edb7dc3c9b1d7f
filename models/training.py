"""Train -> temperature-scale -> ONNX -> parity -> gates (DESIGN §7).

Flow of ``train_model`` (each stage reports to ``progress``):

1. labeled rows sorted by (close_time, symbol); fewer than ``min_train_samples`` -> ``NotEnoughData``;
2. ``time_split`` into train / calibration / validation (60/20/20 by time) with a purge gap:
   a row whose label window ``[t, t + h]`` reaches the next split's first close_time is dropped;
3. fit ``SimpleImputer(median) -> StandardScaler -> LogisticRegression`` on train;
4. ``T = fit_temperature(decision_function(X_cal), y_cal)``; fold T into the classifier so
   ``p = sigmoid(logit / T)`` comes out of sklearn *and* the ONNX graph;
5. export with skl2onnx, check ``max |p_onnx - p_sklearn| <= 1e-5`` on validation (``ParityError``);
6. validation metrics (ECE/Brier/ROC-AUC/PR-AUC), baseline Brier, gates, optional ablation
   without the ``sent_*`` features.

Features are rounded through float32 before fitting: that is what the serving path feeds
ONNX Runtime, so training, parity and serving all see the same numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.baseline import base_rate_probs, base_rates
from models.calibration import calibration_report, fit_temperature
from models.onnx_export import OnnxScorer, to_onnx_bytes

Progress = Callable[[float, str], None]
EstimatorFactory = Callable[[int], Pipeline]

SENTIMENT_PREFIX = "sent_"
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
PARITY_TOLERANCE = 1e-5


class NotEnoughData(ValueError):
    """Too few labeled rows to train (seed 004: "데이터 부족", MIN_TRAIN_SAMPLES)."""

    def __init__(self, message: str, *, count: int, minimum: int) -> None:
        super().__init__(message)
        self.count = count
        self.minimum = minimum


class ParityError(RuntimeError):
    """ONNX and scikit-learn disagree by more than the tolerance; the model is not usable."""


@dataclass(frozen=True)
class Gates:
    """Promotion gates: ``INITIAL_MODEL_MIN_AUC``, ``INITIAL_MODEL_MAX_ECE``, ``INITIAL_MODEL_MIN_PRAUC``."""

    min_auc: float = 0.65
    max_ece: float = 0.05
    min_prauc: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_auc", "max_ece", "min_prauc"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"Gates.{name} must be in [0, 1], got {value!r}")

    def failures(self, *, roc_auc: float, ece: float, pr_auc: float) -> list[str]:
        """Human-readable reasons the metrics fail the gates (empty when they pass)."""
        out: list[str] = []
        if not roc_auc >= self.min_auc:  # "not >=" so a NaN metric fails too
            out.append(f"ROC-AUC {roc_auc:.4f} is below INITIAL_MODEL_MIN_AUC={self.min_auc}")
        if not ece <= self.max_ece:
            out.append(f"ECE {ece:.4f} is above INITIAL_MODEL_MAX_ECE={self.max_ece}")
        if self.min_prauc is not None and not pr_auc >= self.min_prauc:
            out.append(f"PR-AUC {pr_auc:.4f} is below INITIAL_MODEL_MIN_PRAUC={self.min_prauc}")
        return out

    def as_dict(self) -> dict[str, float | None]:
        return {
            "min_auc": self.min_auc,
            "max_ece": self.max_ece,
            "min_prauc": self.min_prauc,
        }


@dataclass(frozen=True)
class TrainResult:
    """Everything the registry stores about one trained (or recalibrated) model.

    ``pipeline`` is the *uncalibrated* fit (pickled by the registry so a recalibration can
    refold a new T); ``calibrated`` is the same pipeline with T folded in, which is exactly
    what ``onnx_bytes`` computes.
    """

    pipeline: Pipeline
    calibrated: Pipeline
    onnx_bytes: bytes
    temperature: float
    feature_names: tuple[str, ...]
    horizon_candles: int
    interval_ms: int
    train_mean: dict[str, float | None]
    train_std: dict[str, float | None]
    time_range: dict[str, Any]
    counts: dict[str, int]
    metrics: dict[str, Any]
    ece_prod: float
    brier_prod: float
    pr_auc_prod: float
    roc_auc: float
    baseline_brier: float
    ablation: dict[str, Any] | None
    gates: Gates
    passed: bool
    gate_failures: list[str]
    parity_max_abs_diff: float
    symbols: tuple[str, ...]
    kind: str = "train"
    parent_version: str | None = None
    estimator: str = field(default="")

    @property
    def beats_baseline(self) -> bool:
        return self.brier_prod < self.baseline_brier

    def metadata(self) -> dict[str, Any]:
        """Plain-data description (the registry adds version, status, sha256, created_at)."""
        return {
            "kind": self.kind,
            "parent_version": self.parent_version,
            "estimator": self.estimator,
            "feature_names": list(self.feature_names),
            "symbols": list(self.symbols),
            "horizon_candles": self.horizon_candles,
            "interval_ms": self.interval_ms,
            "horizon_ms": self.horizon_candles * self.interval_ms,
            "temperature": self.temperature,
            "train_mean": dict(self.train_mean),
            "train_std": dict(self.train_std),
            "time_range": dict(self.time_range),
            "counts": dict(self.counts),
            "metrics": dict(self.metrics),
            "ece_prod": self.ece_prod,
            "brier_prod": self.brier_prod,
            "pr_auc_prod": self.pr_auc_prod,
            "roc_auc": self.roc_auc,
            "baseline_brier": self.baseline_brier,
            "beats_baseline": self.beats_baseline,
            "ablation": self.ablation,
            "gates": {
                **self.gates.as_dict(),
                "passed": self.passed,
                "failures": list(self.gate_failures),
            },
            "parity_max_abs_diff": self.parity_max_abs_diff,
        }


class PreviousModel(Protocol):
    """What ``recalibrate_model`` needs from a registered version (``ModelRegistry.load_version``)."""

    @property
    def metadata(self) -> Mapping[str, Any]: ...

    @property
    def pipeline(self) -> Pipeline: ...


# ---------------------------------------------------------------- pure helpers


def time_split(
    close_time: np.ndarray | Sequence[int],
    horizon_ms: int,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> tuple[np.ndarray, ...]:
    """Split row indices by time into ``len(fractions)`` consecutive blocks, with a purge gap.

    Block k holds rows with ``b_{k-1} <= close_time < b_k`` where ``b_k`` is the close_time at
    sorted position ``floor(n * (f_0 + ... + f_k))`` (so rows sharing a close_time never land in
    two blocks). A row of block k whose label window ``[t, t + horizon_ms]`` reaches ``b_k``
    (``t + horizon_ms >= b_k``) is purged: its label would use prices the next block sees.
    Hence for rows a < b in different blocks, ``t_a + horizon_ms < t_b``.

    Returns one int64 index array per fraction (positions into ``close_time``, time-ordered).
    """
    ct = np.asarray(close_time)
    if ct.ndim != 1:
        raise ValueError(f"close_time must be 1-D, got shape {ct.shape}")
    ct = ct.astype(np.int64)
    if horizon_ms < 0:
        raise ValueError(f"horizon_ms must be >= 0, got {horizon_ms}")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or len(fr) < 2 or np.any(fr <= 0) or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must be >= 2 positive numbers summing to 1, got {list(fractions)}")
    n = len(ct)
    order = np.argsort(ct, kind="stable")
    sorted_ct = ct[order]
    cuts = np.floor(np.cumsum(fr)[:-1] * n + 1e-9).astype(np.int64)
    big = np.iinfo(np.int64).max
    bounds = [int(sorted_ct[c]) if c < n else big for c in cuts]
    edges = [np.iinfo(np.int64).min, *bounds, big]
    out: list[np.ndarray] = []
    for k in range(len(fr)):
        lo, hi = edges[k], edges[k + 1]
        in_block = (sorted_ct >= lo) & (sorted_ct < hi) if k < len(fr) - 1 else sorted_ct >= lo
        if k < len(fr) - 1 and hi != big:
            in_block &= sorted_ct + horizon_ms < hi
        out.append(order[in_block].astype(np.int64))
    return tuple(out)


def default_pipeline(random_state: int = 0) -> Pipeline:
    """Median imputation is inside the model so NaN features (short history) also work at serving."""
    return Pipeline(
        [
            # keep_empty_features: an all-NaN training column must not change the input width.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            (
                "clf",
                LogisticRegression(C=1.0, max_iter=1000, random_state=random_state),
            ),
        ]
    )


def fold_temperature(pipeline: Pipeline, temperature: float) -> Pipeline:
    """Copy of ``pipeline`` whose probability is ``sigmoid(logit / T)``.

    For a linear final step (``logit = x·coef + intercept``) dividing coef_ and intercept_ by
    T is exact, and skl2onnx then exports the calibrated model with no extra node.
    Generic path for other estimators (trees, boosting): T cannot be folded into their
    parameters; append ONNX nodes after the converted graph instead —
    ``logit = Log(p) - Log(1 - p)``, ``p' = Sigmoid(logit / T)`` — and wrap the sklearn side in
    the same formula so the parity check compares like with like.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    clf = pipeline.steps[-1][1]
    if not (hasattr(clf, "coef_") and hasattr(clf, "intercept_")) or len(getattr(clf, "classes_", ())) != 2:
        raise TypeError(
            f"cannot fold a temperature into {type(clf).__name__}: expected a fitted binary linear "
            "classifier with coef_ and intercept_ (see fold_temperature's docstring for the generic path)"
        )
    folded = copy.deepcopy(pipeline)
    out = folded.steps[-1][1]
    out.coef_ = clf.coef_ / temperature
    out.intercept_ = clf.intercept_ / temperature
    return folded


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _span(ct: np.ndarray) -> list[int] | None:
    return [int(ct.min()), int(ct.max())] if len(ct) else None


def _moments(X: np.ndarray, names: Sequence[str]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Per-feature NaN-ignoring mean and population std (ddof=0) of the training split."""
    frame = pd.DataFrame(X, columns=list(names))
    mean, std = frame.mean(), frame.std(ddof=0)

    def clean(s: pd.Series) -> dict[str, float | None]:
        return {str(k): (float(v) if np.isfinite(v) else None) for k, v in s.items()}

    return clean(mean), clean(std)


def _summary(report: Mapping[str, Any]) -> dict[str, float]:
    # None (a class absent, n = 0) becomes NaN so the gates fail instead of crashing
    return {k: float("nan") if report[k] is None else float(report[k]) for k in ("roc_auc", "pr_auc", "brier", "ece")}


@dataclass(frozen=True)
class _Data:
    symbols: np.ndarray  # object
    close_time: np.ndarray  # int64
    X: np.ndarray  # float64 holding float32-representable values
    y: np.ndarray  # int64 0/1


def _prepare(df: pd.DataFrame, feature_names: Sequence[str], minimum: int) -> _Data:
    missing = [c for c in ("symbol", "close_time", "label", *feature_names) if c not in df.columns]
    if missing:
        raise ValueError(f"training frame lacks columns {missing}; it has {list(df.columns)}")
    labeled = df[df["label"].notna()].sort_values(["close_time", "symbol"], kind="stable")
    n = len(labeled)
    if n < minimum:
        raise NotEnoughData(
            f"not enough data (데이터 부족): {n} labeled rows, need at least MIN_TRAIN_SAMPLES={minimum}",
            count=n,
            minimum=minimum,
        )
    y = labeled["label"].to_numpy(dtype=np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label must be 0 or 1; found values {sorted(set(y.tolist()) - {0.0, 1.0})[:5]}")
    X = labeled[list(feature_names)].to_numpy(dtype=np.float64, copy=True)
    X[np.isinf(X)] = np.nan  # inf is "no usable value", like NaN; the imputer handles both
    return _Data(
        symbols=labeled["symbol"].astype(str).to_numpy(dtype=object),
        close_time=labeled["close_time"].to_numpy(dtype=np.int64),
        X=X.astype(np.float32).astype(np.float64),
        y=y.astype(np.int64),
    )


def _check_split(name: str, y: np.ndarray, minimum: int) -> None:
    if len(y) == 0 or y.min() == y.max():
        raise NotEnoughData(
            f"not enough data (데이터 부족): the {name} split has {len(y)} rows and "
            f"{len(np.unique(y))} label class(es) after the time split; both classes are needed",
            count=len(y),
            minimum=minimum,
        )


@dataclass(frozen=True)
class _Evaluation:
    """What every new model version is judged by, trained or recalibrated."""

    temperature: float
    calibrated: Pipeline
    onnx_bytes: bytes
    parity: float
    metrics: dict[str, Any]
    summary: dict[str, float]
    baseline_brier: float
    failures: list[str]


def _calibrate_and_evaluate(
    base: Pipeline,
    rates_from: tuple[np.ndarray, np.ndarray],
    calibration: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    gates: Gates,
    bins: int,
    parity_tol: float,
    progress: Progress,
) -> _Evaluation:
    """The one path from an uncalibrated pipeline to a gated candidate, shared by
    `train_model` and `recalibrate_model`: fit T on the calibration rows, fold it, export to
    ONNX and check parity on validation, validation metrics, the Brier of the per-symbol
    base-rate baseline (rates from `rates_from` = (symbols, y)), the gates.

    `validation` is (X, y, symbols)."""
    X_cal, y_cal = calibration
    X_val, y_val, symbols_val = validation
    progress(0.45, "temperature scaling")
    T = float(fit_temperature(base.decision_function(X_cal), y_cal))
    calibrated = fold_temperature(base, T)
    progress(0.55, "export onnx")
    onnx_bytes = to_onnx_bytes(calibrated, X_val.shape[1])
    progress(0.65, "parity check")
    p_val = calibrated.predict_proba(X_val)[:, 1]
    p_onnx = OnnxScorer(onnx_bytes).predict_proba_up(X_val.astype(np.float32))
    parity = float(np.max(np.abs(p_onnx - p_val))) if len(p_val) else 0.0
    if not parity <= parity_tol:
        raise ParityError(
            f"ONNX/scikit-learn parity failed on validation: max |p_onnx - p_sklearn| = {parity:.3g} "
            f"> {parity_tol:g} (row {int(np.argmax(np.abs(p_onnx - p_val)))}); the model was not registered"
        )
    progress(0.75, "validation metrics")
    report = calibration_report(p_val, y_val, bins=bins)
    raw = calibration_report(_sigmoid(base.decision_function(X_val)), y_val, bins=bins)
    summary = _summary(report)
    rates = base_rates(*rates_from)
    baseline_brier = float(np.mean((base_rate_probs(rates, symbols_val) - y_val) ** 2))
    metrics = {
        **summary,
        "n": int(report["n"]),
        "base_rate": float(np.mean(y_val)),
        "bins": report["bins"],
        "uncalibrated": {"ece": float(raw["ece"]), "brier": float(raw["brier"])},
        "parity_max_abs_diff": parity,
        "baseline_brier": baseline_brier,
        "baseline_rates": rates,
    }
    failures = gates.failures(roc_auc=summary["roc_auc"], ece=summary["ece"], pr_auc=summary["pr_auc"])
    return _Evaluation(T, calibrated, onnx_bytes, parity, metrics, summary, baseline_brier, failures)


def _result_fields(ev: _Evaluation) -> dict[str, Any]:
    """The TrainResult fields an evaluation decides."""
    return {
        "calibrated": ev.calibrated,
        "onnx_bytes": ev.onnx_bytes,
        "temperature": ev.temperature,
        "metrics": ev.metrics,
        "ece_prod": ev.summary["ece"],
        "brier_prod": ev.summary["brier"],
        "pr_auc_prod": ev.summary["pr_auc"],
        "roc_auc": ev.summary["roc_auc"],
        "baseline_brier": ev.baseline_brier,
        "passed": not ev.failures,
        "gate_failures": ev.failures,
        "parity_max_abs_diff": ev.parity,
    }


def _ablation(
    factory: EstimatorFactory,
    random_state: int,
    names: Sequence[str],
    splits: tuple[tuple[np.ndarray, np.ndarray], ...],
    full: dict[str, float],
    bins: int,
) -> dict[str, Any] | None:
    keep = [i for i, n in enumerate(names) if not n.startswith(SENTIMENT_PREFIX)]
    dropped = [n for n in names if n.startswith(SENTIMENT_PREFIX)]
    if not dropped or not keep:
        return None
    (X_tr, y_tr), (X_cal, y_cal), (X_val, y_val) = splits
    model = factory(random_state).fit(X_tr[:, keep], y_tr)
    T = float(fit_temperature(model.decision_function(X_cal[:, keep]), y_cal))
    p = _sigmoid(model.decision_function(X_val[:, keep]) / T)
    without = {
        **_summary(calibration_report(p, y_val, bins=bins)),
        "temperature": T,
        "n_features": len(keep),
    }
    with_ = {**full, "n_features": len(names)}
    return {
        "with_sentiment": with_,
        "without_sentiment": without,
        "dropped_features": dropped,
        "delta_roc_auc": with_["roc_auc"] - without["roc_auc"],
        "delta_brier": with_["brier"] - without["brier"],
        "delta_ece": with_["ece"] - without["ece"],
    }


# ---------------------------------------------------------------- public entry points


def train_model(
    df: pd.DataFrame,
    *,
    feature_names: Sequence[str],
    horizon_candles: int = 1,
    interval_ms: int = 60_000,
    min_train_samples: int = 500,
    gates: Gates,
    include_sentiment: bool = True,
    ablation: bool = True,
    progress: Progress | None = None,
    random_state: int = 0,
    estimator_factory: EstimatorFactory = default_pipeline,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    bins: int = 10,
    parity_tol: float = PARITY_TOLERANCE,
) -> TrainResult:
    """Train, calibrate, export and gate one model from ``features ⋈ labels`` (see module doc)."""
    report = progress or (lambda _f, _s: None)
    if horizon_candles < 1 or interval_ms < 1:
        raise ValueError(f"horizon_candles and interval_ms must be >= 1, got {horizon_candles}, {interval_ms}")
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, calibration, validation), got {list(fractions)}")
    names = [n for n in feature_names if include_sentiment or not n.startswith(SENTIMENT_PREFIX)]
    if not names:
        raise ValueError(
            f"no features left to train on from {list(feature_names)} (include_sentiment={include_sentiment})"
        )
    report(0.0, "prepare data")
    data = _prepare(df, names, min_train_samples)
    report(0.1, "time split")
    horizon_ms = horizon_candles * interval_ms
    idx = time_split(data.close_time, horizon_ms, fractions)
    split_names = ("train", "calibration", "validation")
    for name, ix in zip(split_names, idx, strict=True):
        _check_split(name, data.y[ix], min_train_samples)
    (X_tr, y_tr), (X_cal, y_cal), (X_val, y_val) = splits = tuple((data.X[ix], data.y[ix]) for ix in idx)

    report(0.2, "fit estimator")
    base = estimator_factory(random_state).fit(X_tr, y_tr)
    ev = _calibrate_and_evaluate(
        base,
        (data.symbols[idx[0]], y_tr),
        (X_cal, y_cal),
        (X_val, y_val, data.symbols[idx[2]]),
        gates=gates,
        bins=bins,
        parity_tol=parity_tol,
        progress=report,
    )
    report(0.85, "ablation")
    abl = _ablation(estimator_factory, random_state, names, splits, ev.summary, bins) if ablation else None

    mean, std = _moments(X_tr, names)
    counts = {
        "labeled": len(data.y),
        **{n: len(ix) for n, ix in zip(split_names, idx, strict=True)},
    }
    counts["purged"] = counts["labeled"] - sum(len(ix) for ix in idx)
    time_range = {
        "start": int(data.close_time.min()),
        "end": int(data.close_time.max()),
        **{n: _span(data.close_time[ix]) for n, ix in zip(split_names, idx, strict=True)},
    }
    report(1.0, "done")
    return TrainResult(
        pipeline=base,
        **_result_fields(ev),
        feature_names=tuple(names),
        horizon_candles=horizon_candles,
        interval_ms=interval_ms,
        train_mean=mean,
        train_std=std,
        time_range=time_range,
        counts=counts,
        ablation=abl,
        gates=gates,
        symbols=tuple(sorted(set(data.symbols.tolist()))),
        estimator=repr(base),
    )


def recalibrate_model(
    previous: PreviousModel,
    df_recent: pd.DataFrame,
    *,
    gates: Gates,
    min_samples: int = 200,
    fractions: Sequence[float] = (0.5, 0.5),
    progress: Progress | None = None,
    bins: int = 10,
    parity_tol: float = PARITY_TOLERANCE,
) -> TrainResult:
    """Refit only the temperature of ``previous`` on recent labeled rows (DESIGN §6 "recalibrate").

    The uncalibrated pipeline is kept; recent rows are split by time into calibration /
    validation (purged like ``train_model``); T is refit, folded, exported, parity-checked
    and gated. Train mean/std and the train time range are inherited from ``previous``.
    """
    report = progress or (lambda _f, _s: None)
    meta = previous.metadata
    names = list(meta["feature_names"])
    horizon_candles, interval_ms = (
        int(meta["horizon_candles"]),
        int(meta["interval_ms"]),
    )
    if len(fractions) != 2:
        raise ValueError(f"fractions must be (calibration, validation), got {list(fractions)}")
    report(0.0, "prepare data")
    data = _prepare(df_recent, names, min_samples)
    report(0.1, "time split")
    idx = time_split(data.close_time, horizon_candles * interval_ms, fractions)
    for name, ix in zip(("calibration", "validation"), idx, strict=True):
        _check_split(name, data.y[ix], min_samples)
    (X_cal, y_cal), (X_val, y_val) = ((data.X[ix], data.y[ix]) for ix in idx)

    base = previous.pipeline
    ev = _calibrate_and_evaluate(
        base,
        (data.symbols[idx[0]], y_cal),
        (X_cal, y_cal),
        (X_val, y_val, data.symbols[idx[1]]),
        gates=gates,
        bins=bins,
        parity_tol=parity_tol,
        progress=report,
    )
    ev.metrics["previous_temperature"] = meta.get("temperature")
    prev_counts = meta.get("counts", {})
    prev_range = meta.get("time_range", {})
    report(1.0, "done")
    return TrainResult(
        pipeline=base,
        **_result_fields(ev),
        feature_names=tuple(names),
        horizon_candles=horizon_candles,
        interval_ms=interval_ms,
        train_mean=dict(meta.get("train_mean", {})),
        train_std=dict(meta.get("train_std", {})),
        time_range={
            "start": int(data.close_time.min()),
            "end": int(data.close_time.max()),
            "train": prev_range.get("train"),
            "calibration": _span(data.close_time[idx[0]]),
            "validation": _span(data.close_time[idx[1]]),
        },
        counts={
            "labeled": len(data.y),
            "train": int(prev_counts.get("train", 0)),
            "calibration": len(idx[0]),
            "validation": len(idx[1]),
            "purged": len(data.y) - len(idx[0]) - len(idx[1]),
        },
        ablation=None,
        gates=gates,
        symbols=tuple(sorted(set(data.symbols.tolist()))),
        kind="recalibrate",
        parent_version=meta.get("version"),
        estimator=str(meta.get("estimator", repr(base))),
    )
