"""Sentiment kernels against direct NumPy / brute-force Python oracles."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.kernels import sentiment as k

STEP = 60_000
GRACE = 2_000
T0 = 1_763_683_200_000


def direct_ema(t: float, ts: np.ndarray, score: np.ndarray, weight: np.ndarray, w_ms: float) -> float:
    """Σ wᵢ·sᵢ / Σ wᵢ with wᵢ = weightᵢ·exp(−(t − tsᵢ)/W), straight from DESIGN §4."""
    w = weight * np.exp(-(t - ts) / w_ms)
    return float(np.sum(w * score) / np.sum(w))


def test_ema_fold_in_chunks_equals_direct_weighted_sum():
    rng = np.random.default_rng(7)
    ts = np.sort(T0 + rng.integers(0, 3_600_000, 400)).astype(np.int64)
    score = rng.uniform(-1, 1, ts.size)
    weight = rng.choice([0.0, 0.3, 1.0, 2.5], ts.size)
    windows = np.array([300_000.0, 900_000.0, 3_600_000.0])
    mean, log_w = np.full(3, np.nan), np.full(3, -np.inf)
    ref = float(T0)
    for t in (T0 + 600_000, T0 + 1_800_000, T0 + 1_800_001, T0 + 3_600_000, T0 + 7_200_000):
        sel = (ts < t) & (ts >= ref)
        k.ema_fold(mean, log_w, ref, float(t), ts[sel], score[sel], weight[sel], windows)
        ref = float(t)
        done = ts < t
        for j, w_ms in enumerate(windows):
            assert np.isclose(mean[j], direct_ema(t, ts[done], score[done], weight[done], w_ms), rtol=1e-12, atol=0)
            total = np.sum(weight[done] * np.exp(-(t - ts[done]) / w_ms))
            assert np.isclose(log_w[j], np.log(total), rtol=1e-12, atol=1e-12)


def test_ema_fold_survives_gaps_that_underflow_the_direct_sum():
    """After 30 days a 5m-window weight is exp(−8640) = 0: the direct formula gives 0/0, the state keeps the mean."""
    windows = np.array([300_000.0])
    mean, log_w = np.full(1, np.nan), np.full(1, -np.inf)
    ts = np.array([T0], np.int64)
    k.ema_fold(mean, log_w, float(T0), float(T0 + 1), ts, np.array([0.25]), np.array([1.0]), windows)
    later = T0 + 30 * 86_400_000
    with np.errstate(invalid="ignore"):
        assert np.isnan(direct_ema(later, ts, np.array([0.25]), np.array([1.0]), windows[0]))
    k.ema_fold(mean, log_w, float(T0 + 1), float(later), ts[:0], np.empty(0), np.empty(0), windows)
    assert mean[0] == 0.25 and np.isfinite(log_w[0])
    assert np.isclose(log_w[0], -(later - T0) / windows[0], rtol=1e-12)
    # a fresh tick then dominates completely, as exact arithmetic says it should
    k.ema_fold(
        mean,
        log_w,
        float(later),
        float(later + 1_000),
        np.array([later], np.int64),
        np.array([-0.5]),
        np.array([1.0]),
        windows,
    )
    assert mean[0] == -0.5


def test_ema_fold_without_positive_weight_stays_nan():
    mean, log_w = np.full(1, np.nan), np.full(1, -np.inf)
    k.ema_fold(
        mean,
        log_w,
        0.0,
        float(T0),
        np.array([T0 - 5], np.int64),
        np.array([0.9]),
        np.array([0.0]),
        np.array([300_000.0]),
    )
    assert np.isnan(mean[0]) and log_w[0] == -np.inf


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(T0 - 5 * STEP, T0 + 5 * STEP),
    delay=st.integers(0, 4 * STEP),
    floor_k=st.integers(-10, 10),
)
def test_entry_bar_is_the_first_bar_whose_leak_free_set_holds_the_tick(ts, delay, floor_k):
    ingest = ts + delay
    floor_bar = T0 + floor_k * STEP
    got = k.entry_bars(np.array([ts], np.int64), np.array([ingest], np.int64), STEP, GRACE, floor_bar)[0]
    b = T0 - 20 * STEP
    while not (ts < b and ingest <= b + GRACE):  # brute force over bar ends
        b += STEP
    assert got == max(b, floor_bar)


def test_dedup_matches_unbounded_oracle_and_prunes_memory():
    rng = np.random.default_rng(3)
    window = 10_000
    mem_h, mem_t = np.empty(0, np.int64), np.empty(0, np.int64)
    seen: dict[int, int] = {}
    base, max_ing = 0, np.iinfo(np.int64).min
    for _ in range(60):
        n = int(rng.integers(1, 40))
        hashes = rng.integers(-3, 4, n).astype(np.int64) * (2**60)  # few ids, large and negative values too
        ingest = base + 1_000 * rng.integers(0, 8, n).astype(np.int64)  # any order; gaps hit the window exactly
        late = rng.random(n) < 0.1
        expected = []
        for h, t, lt in zip(hashes.tolist(), ingest.tolist(), late.tolist(), strict=True):
            if lt:
                expected.append(k.LATE)
            elif h in seen and t - seen[h] <= window:
                expected.append(k.DUPLICATE)
            else:
                seen[h] = t
                expected.append(k.ACCEPTED)
        max_ing = max(max_ing, int(ingest.max()))
        status, mem_h, mem_t = k.dedup(mem_h, mem_t, hashes, ingest, late, window, max_ing - window)
        assert status.tolist() == expected
        kept = {h: t for h, t in seen.items() if t >= max_ing - window}
        assert dict(zip(mem_h.tolist(), mem_t.tolist(), strict=True)) == kept
        assert np.all(np.diff(mem_h) > 0)
        base = max_ing  # ingest time does not run backwards across batches


def test_open_bar_counts_half_open_interval():
    ts = np.array([T0 - 1, T0, T0 + 10, T0 + STEP], np.int64)
    cnt, score = k.open_bar(ts, np.array([1.0, 0.2, -0.4, 1.0]), np.array([1.0, 1.0, 3.0, 1.0]), T0, T0 + STEP)
    assert cnt == 2 and np.isclose(score, (0.2 - 1.2) / 4.0)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 80), st.integers(0, 2**31 - 1))
def test_canonical_order_is_a_stable_sort_by_the_six_keys(n: int, seed: int) -> None:
    """Both paths (insertion sort for ≤ 32 rows, chained stable argsorts above) against
    Python's stable `sorted` on the key tuple; few distinct values, so ties are common."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 3, n).astype(np.int64) * STEP
    ts = rng.integers(0, 3, n).astype(np.int64)
    ingest = rng.integers(0, 2, n).astype(np.int64)
    score = rng.choice([-0.5, 0.0, 0.5], n)
    weight = rng.choice([1.0, 2.0], n)
    pol = rng.integers(-1, 2, n).astype(np.int8)
    idx = rng.permutation(n).astype(np.int64)[: max(0, n - 3)]  # a subset, in no order
    got = k.canonical_order(idx, m, ts, ingest, score, weight, pol)
    expected = sorted(idx.tolist(), key=lambda i: (m[i], ts[i], ingest[i], score[i], weight[i], pol[i]))
    assert got.tolist() == expected
