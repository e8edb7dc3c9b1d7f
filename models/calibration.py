"""Calibration math: reliability bins with Wilson intervals, ECE, Brier, ROC-AUC, PR-AUC,
and temperature scaling.

Pure functions on arrays. The heavy passes run in Numba (``models._kernels``); this
module validates inputs once and turns kernel output into JSON-friendly reports.

>>> r = calibration_report([0.1, 0.4, 0.8, 0.9], [0, 0, 1, 1], bins=2, min_bin_samples=2)
>>> r["n"], r["roc_auc"], r["bins"][1]["pos_rate"]
(4, 1.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from models import _kernels

__all__ = [
    "average_precision",
    "brier",
    "calibration_report",
    "calibration_reports_by_group",
    "ece",
    "fit_temperature",
    "roc_auc",
    "temperature_scale",
    "wilson_interval",
]

Report = dict[str, Any]


# ---------------------------------------------------------------- validation


def _check_prob_label(prob: ArrayLike, label: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(prob, label)`` as contiguous float64 1-D arrays, or raise ValueError."""
    try:
        p = np.ascontiguousarray(prob, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"prob must be an array of numbers in [0, 1]; got {type(prob).__name__}") from exc
    y_raw = np.asarray(label)
    if p.ndim != 1 or y_raw.ndim != 1:
        raise ValueError(f"prob and label must be 1-D; got shapes {p.shape} and {y_raw.shape}")
    if p.size != y_raw.size:
        raise ValueError(
            f"prob and label must have the same length; got {p.size} probabilities and {y_raw.size} labels"
        )
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)))  # NaN fails both comparisons
    if bad.size:
        i = int(bad[0])
        what = "NaN" if math.isnan(p[i]) else repr(float(p[i]))
        raise ValueError(
            f"prob must be finite and in [0, 1]; got {what} at index {i} ({bad.size} bad value(s) in total)"
        )
    if y_raw.dtype == np.bool_:
        return p, y_raw.astype(np.float64)
    if y_raw.dtype.kind not in "iuf":
        raise ValueError(f"label must be numeric 0/1; got dtype {y_raw.dtype}")
    y = np.ascontiguousarray(y_raw, dtype=np.float64)
    bad = np.flatnonzero((y != 0.0) & (y != 1.0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"label must be 0 or 1; got {y_raw[i]!r} at index {i} ({bad.size} bad value(s) in total)")
    return p, y


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_params(bins: int, z: float, min_bin_samples: int) -> None:
    if not _is_int(bins) or bins < 1:
        raise ValueError(f"bins must be an int in the range [1, inf); got {bins!r}")
    if not (isinstance(z, (int, float, np.floating)) and math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a finite number > 0 (1.96 for 95%); got {z!r}")
    if not _is_int(min_bin_samples) or min_bin_samples < 0:
        raise ValueError(f"min_bin_samples must be an int >= 0; got {min_bin_samples!r}")


# ---------------------------------------------------------------- small helpers


def wilson_interval(k: ArrayLike, n: ArrayLike, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials (vectorised).

    ``center = (p + z²/2n) / (1 + z²/n)``, ``half = z·sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n)``
    with ``p = k/n``; bounds are clipped to [0, 1] (as statsmodels does) and NaN where n = 0.
    """
    k_a = np.asarray(k, dtype=np.float64)
    n_a = np.asarray(n, dtype=np.float64)
    if np.any(n_a < 0) or np.any(k_a < 0) or np.any(k_a > n_a):
        raise ValueError("wilson_interval needs 0 <= k <= n elementwise; got k outside [0, n] or n < 0")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a finite number > 0; got {z!r}")
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        q = k_a / n_a
        denom = 1.0 + z2 / n_a
        center = (q + z2 / (2.0 * n_a)) / denom
        half = z * np.sqrt(q * (1.0 - q) / n_a + z2 / (4.0 * n_a * n_a)) / denom
    lo = np.clip(center - half, 0.0, 1.0)
    hi = np.clip(center + half, 0.0, 1.0)
    empty = n_a == 0
    lo = np.where(empty, np.nan, lo)
    hi = np.where(empty, np.nan, hi)
    return lo, hi


def ece(prob: ArrayLike, label: ArrayLike, bins: int = 10) -> float | None:
    """Expected calibration error ``Σ (n_b/N)·|pos_rate_b − mean_prob_b|``; None when empty."""
    p, y = _check_prob_label(prob, label)
    _check_params(bins, 1.96, 0)
    if p.size == 0:
        return None
    _, sum_p, sum_y, _ = _kernels.bin_stats(p, y, int(bins))
    return float(np.abs(sum_y - sum_p).sum() / p.size)


def brier(prob: ArrayLike, label: ArrayLike) -> float | None:
    """Brier score ``mean((p − y)²)``; None when empty."""
    p, y = _check_prob_label(prob, label)
    if p.size == 0:
        return None
    return float(np.mean((p - y) ** 2))


def _rank(prob: ArrayLike, label: ArrayLike) -> tuple[float | None, float | None]:
    p, y = _check_prob_label(prob, label)
    order = np.argsort(p)
    auc, ap = _kernels.rank_metrics(p[order], y[order], 0, p.size)
    return _opt(auc), _opt(ap)


def roc_auc(prob: ArrayLike, label: ArrayLike) -> float | None:
    """ROC-AUC with ties at average rank (as scikit-learn); None when one class is absent."""
    return _rank(prob, label)[0]


def average_precision(prob: ArrayLike, label: ArrayLike) -> float | None:
    """Average precision ``Σ (R_t − R_{t−1})·P_t`` over distinct thresholds, exactly as
    ``sklearn.metrics.average_precision_score``; None when one class is absent."""
    return _rank(prob, label)[1]


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


# ---------------------------------------------------------------- reports


def _group_layout(order: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``order`` regrouped by id (prob order kept inside each group).

    Returns ``(perm, offsets, ids)`` over the non-empty groups only. Dense non-negative
    ids (symbol indexes) take an O(n) counting sort; other ids are densified first.
    """
    n = groups.size
    if n and (groups.min() < 0 or groups.max() > 4 * n + 1024):
        uniq, dense = np.unique(groups, return_inverse=True)
    else:
        uniq, dense = None, groups
    n_keys = int(dense.max()) + 1 if n else 0
    perm, offsets = _kernels.group_order(order, dense, n_keys)
    present = np.flatnonzero(offsets[1:] != offsets[:-1])
    ids = present if uniq is None else uniq[present]
    return perm, np.append(offsets[present], n).astype(np.int64), ids


def _build_reports(stats: tuple[np.ndarray, ...], bins: int, z: float, min_bin_samples: int) -> list[Report]:
    """Turn the kernel's per-group arrays into report dicts (NaN -> None)."""
    counts, sum_p, sum_y, sse, auc, ap = stats
    n = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_p = sum_p / counts
        rate = sum_y / counts
        ece_g = np.abs(sum_y - sum_p).sum(axis=1) / n
        brier_g = sse / n
    w_lo, w_hi = wilson_interval(sum_y, counts, z)
    lo_edges = [b / bins for b in range(bins)]
    hi_edges = [(b + 1) / bins for b in range(bins)]
    cols = [a.tolist() for a in (counts, mean_p, rate, w_lo, w_hi)]
    out: list[Report] = []
    for g, (c, mp, pr, wl, wh) in enumerate(zip(*cols)):
        bin_rows = [
            {
                "lo": lo_edges[b],
                "hi": hi_edges[b],
                "n": c[b],
                "mean_prob": mp[b] if c[b] else None,
                "pos_rate": pr[b] if c[b] else None,
                "wilson_lo": wl[b] if c[b] else None,
                "wilson_hi": wh[b] if c[b] else None,
                "reliable": c[b] >= min_bin_samples,
            }
            for b in range(bins)
        ]
        ng = int(n[g])
        out.append(
            {
                "n": ng,
                "ece": float(ece_g[g]) if ng else None,
                "brier": float(brier_g[g]) if ng else None,
                "roc_auc": _opt(auc[g]),
                "pr_auc": _opt(ap[g]),
                "bins": bin_rows,
            }
        )
    return out


def calibration_report(
    prob: ArrayLike,
    label: ArrayLike,
    bins: int = 10,
    z: float = 1.96,
    min_bin_samples: int = 30,
) -> Report:
    """Reliability report of binary probabilities against 0/1 labels.

    Returns ``{n, ece, brier, roc_auc, pr_auc, bins}`` where ``bins`` has one dict per
    equal-width bin ``[b/bins, (b+1)/bins)`` (the last one also holds p = 1.0):
    ``{lo, hi, n, mean_prob, pos_rate, wilson_lo, wilson_hi, reliable}``.
    Empty bins carry n = 0 and None statistics; ``reliable`` is ``n >= min_bin_samples``.
    ``ece``/``brier`` are None when n = 0, ``roc_auc``/``pr_auc`` when a class is absent.
    """
    report, _ = calibration_reports_by_group(prob, label, None, bins=bins, z=z, min_bin_samples=min_bin_samples)
    assert report is not None  # overall=True always builds it
    return report


def calibration_reports_by_group(
    prob: ArrayLike,
    label: ArrayLike,
    groups: ArrayLike | None,
    *,
    bins: int = 10,
    z: float = 1.96,
    min_bin_samples: int = 30,
    overall: bool = True,
    check: bool = True,
) -> tuple[Report | None, dict[int, Report]]:
    """``calibration_report`` overall (when ``overall``) and for each integer group id.

    One sort by prob and an O(n) counting sort by group feed one grouped kernel call;
    only groups with rows get a report. ``groups=None`` gives ``(overall, {})``.
    ``check=False`` skips validation for callers that validated on ingest (float64
    ``prob``/``label`` arrays, integer ``groups``).
    """
    if check:
        p, y = _check_prob_label(prob, label)
        _check_params(bins, z, min_bin_samples)
        g = None if groups is None else np.asarray(groups)
        if g is not None and (g.shape != p.shape or g.dtype.kind not in "iu"):
            raise ValueError(f"groups must be integer ids, one per row; got dtype {g.dtype}, shape {g.shape}")
    else:
        p, y, g = prob, label, groups  # type: ignore[assignment]
    bins, z, min_bin_samples = int(bins), float(z), int(min_bin_samples)
    order = np.argsort(p)  # ties need no stable order: the kernels group equal scores
    overall_report: Report | None = None
    if overall:
        stats = _kernels.grouped_metrics(p[order], y[order], np.array([0, p.size], np.int64), bins)
        overall_report = _build_reports(stats, bins, z, min_bin_samples)[0]
    if g is None:
        return overall_report, {}
    perm, offsets, ids = _group_layout(order, g)
    stats = _kernels.grouped_metrics(p[perm], y[perm], offsets, bins)
    reports = _build_reports(stats, bins, z, min_bin_samples)
    return overall_report, dict(zip(ids.tolist(), reports))


# ---------------------------------------------------------------- temperature scaling


def temperature_scale(logits: ArrayLike, T: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits / T)``."""
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"temperature T must be a finite number > 0; got {T!r}")
    from scipy.special import expit  # here, not at import: scipy costs ~0.5 s of every start-up

    return expit(np.asarray(logits, dtype=np.float64) / T)


def _log_loss_at(z: np.ndarray, y: np.ndarray, T: float) -> float:
    x = z / T
    # −[y·log σ(x) + (1−y)·log(1−σ(x))] = log(1 + eˣ) − y·x, stable for large |x|
    return float(np.mean(np.logaddexp(0.0, x) - y * x))


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    bounds: tuple[float, float] = (1e-2, 1e2),
) -> float:
    """Temperature ``T`` minimising the log-loss of ``sigmoid(logits / T)``.

    Bounded scalar search over ``log T`` (so the search is scale-free); when the data
    push T to a bound (e.g. a single class), that bound is returned.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 1 or z.shape != y.shape or z.size == 0:
        raise ValueError(
            f"logits and labels must be non-empty 1-D arrays of the same length; got {z.shape} and {y.shape}"
        )
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite; got NaN or inf")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    lo, hi = bounds
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bounds must satisfy 0 < lo < hi < inf; got {bounds!r}")
    y = y.astype(np.float64)
    from scipy.optimize import minimize_scalar  # here, not at import (see temperature_scale)

    res = minimize_scalar(
        lambda s: _log_loss_at(z, y, math.exp(s)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(math.exp(res.x))
