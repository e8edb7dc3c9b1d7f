"""WindowedCalibration: evaluate() equals the oracle report on the rows a pandas filter
keeps (``now − window < ts <= now``), overall and per symbol; eviction keeps memory bounded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.calibration_window import WindowedCalibration
from tests.models.test_calibration import assert_report_matches, oracle_report

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_763_683_200_000


def make_rows(seed: int, n: int, *, span_ms: int, symbols: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(T0, T0 + span_ms, n))
    sym = rng.integers(0, symbols, n).astype(np.int32)
    prob = np.round(rng.random(n), 2)
    label = (rng.random(n) < prob**1.2).astype(int)
    return pd.DataFrame({"ts": ts, "sym": sym, "prob": prob, "label": label})


def add_in_chunks(w: WindowedCalibration, df: pd.DataFrame, chunks: int) -> None:
    for part in np.array_split(np.arange(len(df)), chunks):
        c = df.iloc[part]
        w.add(
            c["ts"].to_numpy(),
            c["sym"].to_numpy(),
            c["prob"].to_numpy(),
            c["label"].to_numpy(),
        )


def oracle_window(df: pd.DataFrame, now: int, window: int, **kw):
    sel = df[(df["ts"] > now - window) & (df["ts"] <= now)]
    overall = oracle_report(sel["prob"], sel["label"], **kw)
    per = {int(s): oracle_report(g["prob"], g["label"], **kw) for s, g in sel.groupby("sym")}
    return overall, per


def assert_window_matches(got: dict, df: pd.DataFrame, now: int, window: int, **kw) -> None:
    overall, per = oracle_window(df, now, window, **kw)
    assert_report_matches(got["overall"], overall)
    assert sorted(got["per_symbol"]) == sorted(per)
    for s, rep in per.items():
        assert_report_matches(got["per_symbol"][s], rep)


def test_evaluate_equals_oracle_on_filtered_rows():
    df = make_rows(0, 6000, span_ms=3 * HOUR, symbols=25)
    w = WindowedCalibration(retention_ms=6 * HOUR, model_version="v1", initial_rows=64)
    add_in_chunks(w, df, 37)
    assert len(w) == len(df)
    for now, window in [
        (T0 + 3 * HOUR, 6 * HOUR),
        (T0 + 2 * HOUR, HOUR),
        (T0 + 90 * MIN, 17 * MIN),
    ]:
        got = w.evaluate(now, window, bins=10, z=1.96, min_bin_samples=30)
        assert_window_matches(got, df, now, window, bins=10, z=1.96, min_bin_samples=30)


def test_window_bounds_are_open_left_closed_right():
    w = WindowedCalibration(retention_ms=HOUR)
    w.add(np.array([1000, 2000, 3000]), np.array([0, 0, 1]), [0.2, 0.4, 0.9], [0, 1, 1])
    got = w.evaluate(3000, 2000, bins=2, min_bin_samples=1)
    # ts 1000 is at now − window: excluded; 3000 == now: included
    assert got["overall"]["n"] == 2
    assert sorted(got["per_symbol"]) == [0, 1]
    assert got["per_symbol"][0]["n"] == 1


def test_per_symbol_off_gives_overall_only():
    df = make_rows(1, 2000, span_ms=HOUR, symbols=10)
    w = WindowedCalibration(retention_ms=HOUR)
    add_in_chunks(w, df, 3)
    got = w.evaluate(T0 + HOUR, HOUR, per_symbol=False, bins=5, min_bin_samples=5)
    assert got["per_symbol"] == {}
    overall, _ = oracle_window(df, T0 + HOUR, HOUR, bins=5, min_bin_samples=5)
    assert_report_matches(got["overall"], overall)


def test_eviction_keeps_memory_bounded_and_results_right():
    # 10 hours of 1-minute rows for 20 symbols, retention 1 hour, fed minute by minute in 10-min chunks
    minutes = np.arange(10 * 60)
    ts = np.repeat(T0 + minutes * MIN, 20)
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "ts": ts,
            "sym": np.tile(np.arange(20, dtype=np.int32), minutes.size),
            "prob": rng.random(ts.size),
        }
    )
    df["label"] = (rng.random(len(df)) < df["prob"]).astype(int)
    w = WindowedCalibration(retention_ms=HOUR, initial_rows=256)
    max_len = 0
    for part in np.array_split(np.arange(len(df)), 60):
        c = df.iloc[part]
        w.add(
            c["ts"].to_numpy(),
            c["sym"].to_numpy(),
            c["prob"].to_numpy(),
            c["label"].to_numpy(),
        )
        max_len = max(max_len, len(w))
        newest = int(c["ts"].max())
        assert (w._ts[w._start : w._end] > newest - HOUR).all()  # nothing stale is kept
    assert max_len <= 60 * 20 + 10 * 20  # one hour of rows plus the chunk in flight
    assert w.capacity <= 4096  # doubled from 256 only as far as needed
    assert w.dropped == 0
    now = int(df["ts"].max())
    assert_window_matches(w.evaluate(now, HOUR, min_bin_samples=30), df, now, HOUR, min_bin_samples=30)


def test_out_of_order_rows_are_filtered_and_later_compacted():
    w = WindowedCalibration(retention_ms=10 * MIN, initial_rows=8)
    w.add(np.array([T0 + 20 * MIN]), np.array([1]), [0.7], [1])
    stale = T0  # already older than newest − retention when it arrives
    w.add(np.array([T0 + 21 * MIN, stale]), np.array([1, 2]), [0.6, 0.2], [0, 0])
    got = w.evaluate(T0 + 21 * MIN, 10 * MIN, min_bin_samples=1)
    assert got["overall"]["n"] == 2 and sorted(got["per_symbol"]) == [1]
    w.add(
        np.full(10, T0 + 22 * MIN),
        np.zeros(10, np.int32),
        np.full(10, 0.5),
        np.ones(10, int),
    )
    assert len(w) == 12  # the stale straggler was dropped while compacting for room


def test_cap_drops_oldest_rows():
    w = WindowedCalibration(retention_ms=HOUR, initial_rows=16, max_rows=100)
    for i in range(5):
        base = T0 + i * MIN
        w.add(
            np.full(40, base),
            np.zeros(40, np.int32),
            np.full(40, 0.3),
            np.zeros(40, int),
        )
    assert len(w) == 100 and w.capacity == 100 and w.dropped == 100
    # the oldest minutes went first: 20 rows of minute 2 and all of minutes 3 and 4 remain
    assert w._ts[w._start : w._end].min() == T0 + 2 * MIN
    w.add(
        np.full(250, T0 + 9 * MIN),
        np.zeros(250, np.int32),
        np.full(250, 0.3),
        np.zeros(250, int),
    )
    assert len(w) == 100 and w.dropped == 350


def test_validation():
    w = WindowedCalibration(retention_ms=HOUR)
    with pytest.raises(ValueError, match="same length"):
        w.add(np.array([1, 2]), np.array([0]), [0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match=r"prob must be finite and in \[0, 1\]"):
        w.add(np.array([1]), np.array([0]), [1.5], [0])
    with pytest.raises(ValueError, match="integer arrays"):
        w.add(np.array([1.5]), np.array([0]), [0.5], [0])
    with pytest.raises(ValueError, match="exceeds retention_ms"):
        w.evaluate(T0, 2 * HOUR)
    with pytest.raises(ValueError, match="retention_ms must be > 0"):
        WindowedCalibration(retention_ms=0)
