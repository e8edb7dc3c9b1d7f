"""Calibration math against independent oracles: direct NumPy (bins, ECE), scikit-learn
(Brier, ROC-AUC, average precision, log-loss) and statsmodels (Wilson intervals)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from statsmodels.stats.proportion import proportion_confint

from models.calibration import (
    average_precision,
    brier,
    calibration_report,
    calibration_reports_by_group,
    ece,
    fit_temperature,
    roc_auc,
    temperature_scale,
    wilson_interval,
)

TOL = 1e-9


# ------------------------------------------------------------------ oracle


def oracle_report(prob, label, bins: int = 10, z: float = 1.96, min_bin_samples: int = 30) -> dict:
    """The report computed the slow, obvious way (NumPy + scikit-learn + statsmodels)."""
    p = np.asarray(prob, dtype=float)
    y = np.asarray(label, dtype=int)
    n = p.size
    edges = np.arange(bins + 1) / bins
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    alpha = 2 * norm.sf(z)  # statsmodels takes the level, not z
    rows, ece_sum = [], 0.0
    for b in range(bins):
        sel = idx == b
        nb = int(sel.sum())
        row = {
            "lo": edges[b],
            "hi": edges[b + 1],
            "n": nb,
            "reliable": nb >= min_bin_samples,
        }
        if nb:
            mp, pr = p[sel].mean(), y[sel].mean()
            lo, hi = proportion_confint(int(y[sel].sum()), nb, alpha=alpha, method="wilson")
            row.update(mean_prob=mp, pos_rate=pr, wilson_lo=lo, wilson_hi=hi)
            ece_sum += nb / n * abs(pr - mp)
        else:
            row.update(mean_prob=None, pos_rate=None, wilson_lo=None, wilson_hi=None)
        rows.append(row)
    both = n > 0 and 0 < y.sum() < n
    return {
        "n": n,
        "ece": ece_sum if n else None,
        "brier": brier_score_loss(y, p) if n else None,
        "roc_auc": roc_auc_score(y, p) if both else None,
        "pr_auc": average_precision_score(y, p) if both else None,
        "bins": rows,
    }


def assert_close(got, want, tol: float = TOL, where: str = "") -> None:
    if want is None or got is None or isinstance(want, bool):
        assert got is want, f"{where}: got {got!r}, want {want!r}"
    else:
        assert abs(got - want) <= tol, f"{where}: got {got!r}, want {want!r}"


def assert_report_matches(got: dict, want: dict, tol: float = TOL) -> None:
    for key in ("n", "ece", "brier", "roc_auc", "pr_auc"):
        assert_close(got[key], want[key], tol, key)
    assert len(got["bins"]) == len(want["bins"])
    for b, (g, w) in enumerate(zip(got["bins"], want["bins"])):
        for key in w:
            assert_close(g[key], w[key], tol, f"bin {b} {key}")


def random_data(seed: int, n: int, *, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    if decimals is not None:
        p = np.round(p, decimals)  # many ties, many values exactly on bin edges
    y = (rng.random(n) < p**1.3).astype(int)  # miscalibrated on purpose
    return p, y


# ------------------------------------------------------------------ report


@pytest.mark.parametrize(
    ("seed", "n", "bins", "decimals"),
    [
        (0, 5000, 10, None),
        (1, 5000, 10, 2),
        (2, 777, 7, 1),
        (3, 40, 15, None),
        (4, 3000, 1, 3),
    ],
)
def test_report_matches_oracles(seed, n, bins, decimals):
    p, y = random_data(seed, n, decimals=decimals)
    got = calibration_report(p, y, bins=bins, min_bin_samples=30)
    assert_report_matches(got, oracle_report(p, y, bins=bins, min_bin_samples=30))


def test_report_with_other_z_and_reliability_flag():
    p, y = random_data(5, 400)
    got = calibration_report(p, y, bins=10, z=2.575, min_bin_samples=45)
    assert_report_matches(got, oracle_report(p, y, bins=10, z=2.575, min_bin_samples=45))
    assert {b["reliable"] for b in got["bins"]} == {True, False}


def test_report_is_strict_json():
    p, y = random_data(6, 30)
    p[:5] = 0.95  # leaves some bins empty -> None, never NaN
    json.dumps(calibration_report(p, y, bins=20), allow_nan=False)


def test_exact_edges_zero_and_one():
    # nextafter(0.9, 0) * 10 rounds up to 9.0: the edge check must still put it in bin 8
    p = np.array([0.0, 0.0, 0.1, 0.5, 0.7, np.nextafter(0.9, 0.0), 0.9999999, 1.0, 1.0])
    y = np.array([0, 1, 0, 1, 1, 0, 1, 1, 0])
    got = calibration_report(p, y, bins=10, min_bin_samples=1)
    assert [b["n"] for b in got["bins"]] == [2, 1, 0, 0, 0, 1, 0, 1, 1, 3]
    assert got["bins"][9]["mean_prob"] == pytest.approx((0.9999999 + 2.0) / 3, abs=TOL)
    assert_report_matches(got, oracle_report(p, y, bins=10, min_bin_samples=1))


@pytest.mark.parametrize("bins", [12, 30, 49])
def test_every_edge_and_the_float_just_below_it(bins):
    """p = b/bins opens bin b; the float just below it belongs to bin b-1 (lo <= p < hi),
    even where p * bins rounds across the integer (several such edges at 12, 30 and 49)."""
    edges = np.arange(1, bins) / bins
    p = np.concatenate([edges, np.nextafter(edges, 0.0)])
    y = np.arange(p.size) % 2
    got = calibration_report(p, y, bins=bins, min_bin_samples=1)
    assert [b["n"] for b in got["bins"]] == [1] + [2] * (bins - 2) + [1]
    assert_report_matches(got, oracle_report(p, y, bins=bins, min_bin_samples=1))


def test_empty_bins_are_none():
    got = calibration_report([0.05, 0.95], [0, 1], bins=10)
    middle = got["bins"][5]
    assert middle == {
        "lo": 0.5,
        "hi": 0.6,
        "n": 0,
        "mean_prob": None,
        "pos_rate": None,
        "wilson_lo": None,
        "wilson_hi": None,
        "reliable": False,
    }


def test_single_class_has_no_auc():
    p, _ = random_data(7, 300)
    for y in (np.ones(300, int), np.zeros(300, int)):
        got = calibration_report(p, y)
        assert got["roc_auc"] is None and got["pr_auc"] is None
        assert_close(got["brier"], float(np.mean((p - y) ** 2)))
        assert_report_matches(got, oracle_report(p, y))


def test_n_equals_one():
    got = calibration_report([0.3], [1], bins=10, min_bin_samples=1)
    assert got["n"] == 1 and got["roc_auc"] is None
    assert_close(got["ece"], 0.7)
    assert_close(got["brier"], 0.49)
    assert_report_matches(got, oracle_report([0.3], [1], min_bin_samples=1))


def test_n_equals_zero():
    got = calibration_report([], [])
    assert (got["n"], got["ece"], got["brier"], got["roc_auc"], got["pr_auc"]) == (
        0,
        None,
        None,
        None,
        None,
    )
    assert all(b["n"] == 0 and b["mean_prob"] is None for b in got["bins"])


def test_all_tied_scores():
    p = np.full(10, 0.4)
    y = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0, 0])
    got = calibration_report(p, y)
    assert_close(got["roc_auc"], 0.5)
    assert_close(got["pr_auc"], 0.3)
    assert_report_matches(got, oracle_report(p, y))


def test_bool_and_float_labels_accepted():
    p, y = random_data(8, 200)
    a = calibration_report(p, y.astype(bool))
    b = calibration_report(p, y.astype(float))
    assert_report_matches(a, oracle_report(p, y))
    assert_report_matches(b, oracle_report(p, y))


@pytest.mark.parametrize(
    ("prob", "label", "kwargs", "match"),
    [
        ([0.1, 0.2], [1], {}, r"same length; got 2 probabilities and 1 labels"),
        ([0.1, 1.2], [0, 1], {}, r"in \[0, 1\]; got 1\.2 at index 1"),
        ([0.1, -0.0001], [0, 1], {}, r"got -0\.0001 at index 1"),
        ([np.nan, 0.2], [0, 1], {}, r"got NaN at index 0"),
        ([np.inf], [1], {}, r"got inf at index 0"),
        ([0.1, 0.2], [0, 2], {}, r"label must be 0 or 1; got .*2.* at index 1"),
        ([0.1, 0.2], ["a", "b"], {}, r"label must be numeric 0/1"),
        (
            [0.1],
            [1],
            {"bins": 0},
            r"bins must be an int in the range \[1, inf\); got 0",
        ),
        ([0.1], [1], {"bins": 2.5}, r"bins must be an int"),
        ([0.1], [1], {"z": -1.0}, r"z must be a finite number > 0"),
        ([0.1], [1], {"min_bin_samples": -3}, r"min_bin_samples must be an int >= 0"),
        ([[0.1]], [[1]], {}, r"must be 1-D"),
    ],
)
def test_validation_errors(prob, label, kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration_report(prob, label, **kwargs)


# ------------------------------------------------------------------ helpers


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_helpers_match_oracles(seed):
    p, y = random_data(seed, 2000, decimals=2 if seed == 11 else None)
    want = oracle_report(p, y, bins=12)
    assert_close(ece(p, y, bins=12), want["ece"])
    assert_close(brier(p, y), brier_score_loss(y, p))
    assert_close(roc_auc(p, y), roc_auc_score(y, p))
    assert_close(average_precision(p, y), average_precision_score(y, p))


def test_helpers_on_degenerate_input():
    assert ece([], [], 10) is None and brier([], []) is None
    assert roc_auc([0.2, 0.3], [1, 1]) is None
    assert average_precision([0.2, 0.3], [0, 0]) is None


def test_wilson_vectorised_matches_statsmodels():
    rng = np.random.default_rng(13)
    n = rng.integers(1, 500, 200)
    k = rng.integers(0, n + 1)
    k[:3], n[:3] = [0, 5, 7], [5, 5, 7]  # both extremes included
    for z in (1.96, 1.0, 3.1):
        lo, hi = wilson_interval(k, n, z)
        want_lo, want_hi = proportion_confint(k, n, alpha=2 * norm.sf(z), method="wilson")
        np.testing.assert_allclose(lo, want_lo, rtol=0, atol=TOL)
        np.testing.assert_allclose(hi, want_hi, rtol=0, atol=TOL)


def test_wilson_scalar_and_empty():
    lo, hi = wilson_interval(3, 10)
    want = proportion_confint(3, 10, alpha=2 * norm.sf(1.96), method="wilson")
    assert abs(float(lo) - want[0]) <= TOL and abs(float(hi) - want[1]) <= TOL
    lo, hi = wilson_interval([0, 1], [0, 2])
    assert math.isnan(lo[0]) and math.isnan(hi[0]) and not math.isnan(lo[1])
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(4, 3)


# ------------------------------------------------------------------ grouped reports


def test_grouped_reports_match_per_group_oracle():
    rng = np.random.default_rng(14)
    p, y = random_data(14, 3000, decimals=2)
    dense, sparse = np.array([0, 3, 7, 2]), np.array([-5, 10**9, 42, 7])
    for ids in (dense, sparse):
        g = rng.choice(ids, size=p.size)
        overall, per = calibration_reports_by_group(p, y, g, bins=8, min_bin_samples=10)
        assert_report_matches(overall, oracle_report(p, y, bins=8, min_bin_samples=10))
        assert sorted(per) == sorted(ids.tolist())
        for gid, rep in per.items():
            sel = g == gid
            assert_report_matches(rep, oracle_report(p[sel], y[sel], bins=8, min_bin_samples=10))


def test_grouped_rejects_bad_groups():
    with pytest.raises(ValueError, match="groups must be integer ids"):
        calibration_reports_by_group([0.1, 0.2], [0, 1], [0.5, 1.5])


# ------------------------------------------------------------------ temperature


def test_temperature_scale_is_sigmoid_of_scaled_logits():
    z = np.array([-30.0, -1.0, 0.0, 2.0, 40.0])
    np.testing.assert_allclose(temperature_scale(z, 2.0), 1 / (1 + np.exp(-z / 2.0)), rtol=1e-12)
    with pytest.raises(ValueError, match="T must be a finite number > 0"):
        temperature_scale(z, 0.0)


@pytest.mark.parametrize(("t_true", "seed"), [(2.5, 20), (0.5, 21), (1.0, 22)])
def test_fit_temperature_recovers_known_temperature(t_true, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, 20_000)
    labels = (rng.random(logits.size) < 1 / (1 + np.exp(-logits / t_true))).astype(int)
    t_fit = fit_temperature(logits, labels)
    assert abs(t_fit - t_true) / t_true < 0.08
    fitted = log_loss(labels, temperature_scale(logits, t_fit))
    raw = log_loss(labels, temperature_scale(logits, 1.0))
    assert fitted <= raw + 1e-12
    if t_true != 1.0:
        assert fitted < raw - 1e-3
    # a coarse grid never beats the optimiser
    grid = [log_loss(labels, temperature_scale(logits, t)) for t in np.geomspace(0.2, 6, 60)]
    assert fitted <= min(grid) + 1e-9


def test_fit_temperature_validates():
    with pytest.raises(ValueError, match="same length"):
        fit_temperature([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fit_temperature([0.1, 0.2], [1, 3])
    with pytest.raises(ValueError, match="logits must be finite"):
        fit_temperature([np.nan, 0.2], [1, 0])
