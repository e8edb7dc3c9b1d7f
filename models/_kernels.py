"""Numba kernels behind ``models.calibration`` (private; inputs are validated by the caller).

Layout used by every kernel: ``prob`` (float64) and ``label`` (float64 holding 0.0/1.0)
are split into groups by ``offsets`` (group ``g`` is ``offsets[g]:offsets[g+1]``), and
inside each group ``prob`` is sorted **ascending**. The binning pass ignores the order;
the ranking metrics walk each group from its highest score down, one distinct
threshold at a time, which is how scikit-learn groups ties.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def bin_of(p: float, bins: int) -> int:
    """Index ``b`` of the equal-width bin with ``b/bins <= p < (b+1)/bins``; 1.0 -> last.

    ``int(p * bins)`` alone can land one bin off when ``p * bins`` rounds across an
    integer, so the guess is checked against the exact edges ``b / bins``.
    """
    b = int(p * bins)
    if b >= bins:
        b = bins - 1
    if b > 0 and p < b / bins:
        b -= 1
    elif b + 1 < bins and p >= (b + 1) / bins:
        b += 1
    return b


@njit(cache=True)
def bin_stats(prob, label, bins):
    """One pass: per-bin count, sum of prob, sum of label, and the sum of squared errors."""
    counts = np.zeros(bins, np.int64)
    sum_p = np.zeros(bins)
    sum_y = np.zeros(bins)
    sse = 0.0
    for i in range(prob.size):
        p = prob[i]
        y = label[i]
        b = bin_of(p, bins)
        counts[b] += 1
        sum_p[b] += p
        sum_y[b] += y
        d = p - y
        sse += d * d
    return counts, sum_p, sum_y, sse


@njit(cache=True)
def rank_metrics(prob, label, lo, hi):
    """ROC-AUC and average precision of ``prob[lo:hi]`` (sorted ascending).

    Walking thresholds from the top, a tie block adding ``dtp`` positives and ``dfp``
    negatives contributes the trapezoid ``dfp * (tp + dtp/2)`` to the ROC area (the
    Mann-Whitney statistic with average ranks) and ``(dtp/P) * tp/(tp+fp)`` to AP
    (scikit-learn's step-wise ``-sum(diff(recall) * precision)``).
    Returns NaN for both when a class is absent.
    """
    tp = 0.0
    fp = 0.0
    area = 0.0
    ap = 0.0
    i = hi - 1
    while i >= lo:
        t = prob[i]
        dtp = 0.0
        dfp = 0.0
        while i >= lo and prob[i] == t:
            if label[i] > 0.5:
                dtp += 1.0
            else:
                dfp += 1.0
            i -= 1
        area += dfp * (tp + 0.5 * dtp)
        tp += dtp
        fp += dfp
        if dtp > 0.0:
            ap += dtp * (tp / (tp + fp))
    if tp == 0.0 or fp == 0.0:
        return np.nan, np.nan
    return area / (tp * fp), ap / tp


@njit(cache=True)
def grouped_metrics(prob, label, offsets, bins):
    """Bin statistics, Brier numerator and ranking metrics for every group.

    Returns ``counts (G, bins) int64, sum_p (G, bins), sum_y (G, bins), sse (G,),
    auc (G,), ap (G,)``; ``auc``/``ap`` are NaN for a group with a single class.
    """
    n_groups = offsets.size - 1
    counts = np.zeros((n_groups, bins), np.int64)
    sum_p = np.zeros((n_groups, bins))
    sum_y = np.zeros((n_groups, bins))
    sse = np.zeros(n_groups)
    auc = np.full(n_groups, np.nan)
    ap = np.full(n_groups, np.nan)
    for g in range(n_groups):
        lo = offsets[g]
        hi = offsets[g + 1]
        err = 0.0
        for i in range(lo, hi):
            p = prob[i]
            y = label[i]
            b = bin_of(p, bins)
            counts[g, b] += 1
            sum_p[g, b] += p
            sum_y[g, b] += y
            d = p - y
            err += d * d
        sse[g] = err
        if hi > lo:
            auc[g], ap[g] = rank_metrics(prob, label, lo, hi)
    return counts, sum_p, sum_y, sse, auc, ap


@njit(cache=True)
def group_order(order, keys, n_keys):
    """Counting sort: ``order`` re-arranged by ``keys[order]`` (stable), plus key offsets.

    Keeps the prob-ascending order from ``order`` inside each key, so one global prob
    sort serves every group. ``keys`` must lie in ``[0, n_keys)``. Returns
    ``(perm, offsets)`` with rows of key ``k`` at ``perm[offsets[k]:offsets[k+1]]``.
    """
    offsets = np.zeros(n_keys + 1, np.int64)
    for i in range(order.size):
        offsets[keys[order[i]] + 1] += 1
    for k in range(n_keys):
        offsets[k + 1] += offsets[k]
    pos = offsets[:-1].copy()
    perm = np.empty(order.size, np.int64)
    for i in range(order.size):
        j = order[i]
        k = keys[j]
        perm[pos[k]] = j
        pos[k] += 1
    return perm, offsets


@njit(cache=True)
def stale_prefix(ts, cutoff):
    """Length of the leading run of ``ts <= cutoff`` (rows a FIFO window can release)."""
    i = 0
    while i < ts.size and ts[i] <= cutoff:
        i += 1
    return i
