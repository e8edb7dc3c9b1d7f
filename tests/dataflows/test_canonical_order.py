"""The fold order of a backfill's ticks (`kernels.sentiment.canonical_order`, two sorts and
a fix of equal (bar, ts) runs) is the order six successive stable sorts give, the oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.kernels import sentiment as k


def _six_sorts(idx, m, ts, ingest, score, weight, pol):
    for key in (pol, weight, score, ingest, ts, m):  # least significant first
        idx = idx[np.argsort(key[idx], kind="mergesort")]
    return idx


@settings(max_examples=300, deadline=None)
@given(st.integers(33, 300), st.sampled_from([3, 50, 10**6]), st.sampled_from([2, 5_000]), st.booleans(), st.data())
def test_the_fold_order_is_the_six_sort_order(n, ts_span, lag, few_scores, data) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ts = rng.integers(0, ts_span, n).astype(np.int64)  # small spans: many equal (bar, ts) runs
    ingest = ts + rng.integers(0, lag, n)
    m = ingest // 1_000 * 1_000
    score = rng.choice([-0.0, 0.0, 0.5, -0.5, 1.0], n) if few_scores else rng.uniform(-1, 1, n)
    weight = rng.choice([1.0, 0.5], n)
    pol = rng.integers(-1, 2, n).astype(np.int8)
    idx = rng.permutation(n)[: data.draw(st.integers(33, n))]  # > 32: the sorting branch
    got = k.canonical_order(idx.copy(), m, ts, ingest, score, weight, pol)
    assert got.tolist() == _six_sorts(idx.copy(), m, ts, ingest, score, weight, pol).tolist()
