"""Accuracy health: classification thresholds, the rolling monitor against pandas, the
emergency-retrain decision, and the daily trend against a pandas groupby."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.accuracy import (
    AccuracyMonitor,
    AccuracyState,
    VersionedAccuracy,
    classify_accuracy,
    daily_trend,
    health_of,
    should_emergency_retrain,
)

DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("acc", "want"),
    [
        (1.0, "GOOD"),
        (0.70, "GOOD"),
        (0.6999, "WARNING"),
        (0.50, "WARNING"),
        (0.4999, "CRITICAL"),
        (0.0, "CRITICAL"),
    ],
)
def test_classify_seed_thresholds(acc, want):
    assert classify_accuracy(acc) == want


def test_classify_custom_thresholds():
    assert classify_accuracy(0.6, good=0.6, warning=0.4) == "GOOD"
    assert classify_accuracy(0.39, good=0.6, warning=0.4) == "CRITICAL"


def test_classify_rejects_percentages_and_bad_thresholds():
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]; got 73 \(a percentage"):
        classify_accuracy(73)
    with pytest.raises(ValueError, match="warning <= good"):
        classify_accuracy(0.5, good=0.4, warning=0.6)
    with pytest.raises(ValueError, match="fraction"):
        classify_accuracy(float("nan"))


def test_rolling_accuracy_matches_pandas_tail():
    rng = np.random.default_rng(0)
    prob = rng.random(3000)
    label = (rng.random(3000) < 0.55).astype(int)
    right = pd.Series((prob >= 0.5) == (label == 1))
    m = AccuracyMonitor(window=250, min_samples=10)
    assert m.accuracy is None and m.state().health == "INSUFFICIENT_DATA"
    seen = 0
    for size in [1, 7, 100, 0, 249, 250, 251, 600, 3, 1539]:
        m.add(prob[seen : seen + size], label[seen : seen + size])
        seen += size
        if seen == 0:
            continue
        tail = right.iloc[:seen].tail(250)
        assert m.state().n == len(tail)
        assert m.accuracy == pytest.approx(tail.mean(), abs=1e-12)
    assert seen == 3000


def test_prob_exactly_half_counts_as_up():
    m = AccuracyMonitor(window=4, min_samples=1)
    m.add([0.5, 0.5, 0.49, 0.49], [1, 0, 0, 1])
    assert m.accuracy == 0.5


def test_monitor_state_health():
    m = AccuracyMonitor(window=10, min_samples=5)
    m.add([0.9] * 10, [1] * 3 + [0] * 7)  # 30 % right
    s = m.state()
    assert (s.accuracy, s.n, s.health, s.min_samples) == (
        pytest.approx(0.3),
        10,
        "CRITICAL",
        5,
    )


def test_no_verdict_below_min_samples():
    m = AccuracyMonitor(window=50, min_samples=20)
    m.add([0.9] * 19, [0] * 19)  # 0 % right, but only 19 of the 20 needed
    s = m.state()
    assert (s.accuracy, s.n, s.health) == (0.0, 19, "INSUFFICIENT_DATA")
    assert not should_emergency_retrain(s, now_ms=0, cooldown_s=0)
    m.add([0.9], [0])
    assert m.state().health == "CRITICAL" and should_emergency_retrain(m.state(), now_ms=0, cooldown_s=0)
    assert health_of(None, 0, 0) == "INSUFFICIENT_DATA"  # nothing at all is never a verdict


def test_versions_are_judged_on_their_own_predictions():
    """Each version's accuracy equals pandas over that version's rows only, whatever the interleaving."""
    rng = np.random.default_rng(3)
    versions = rng.choice(["baseline", "m1", "m2"], size=2000, p=[0.5, 0.3, 0.2])
    prob = rng.random(2000)
    label = (rng.random(2000) < np.where(versions == "m1", 0.9, 0.2)).astype(int)
    book = VersionedAccuracy(window=300, min_samples=50)
    for start in range(0, 2000, 37):  # batches mixing versions, each version's rows in order
        for v in ("baseline", "m1", "m2"):
            mask = versions[start : start + 37] == v
            book.add(v, prob[start : start + 37][mask], label[start : start + 37][mask])
    df = pd.DataFrame({"v": versions, "right": (prob >= 0.5) == (label == 1)})
    for v, rows in df.groupby("v"):
        tail = rows["right"].tail(300)
        state = book.state(v)
        assert state.n == len(tail) and state.accuracy == pytest.approx(tail.mean(), abs=1e-12)
    assert book.state("never-fed") == AccuracyState(None, 0, "INSUFFICIENT_DATA", 50, None)


def test_versioned_book_is_bounded_and_shares_one_emergency_cooldown():
    book = VersionedAccuracy(window=10, min_samples=1, max_versions=2)
    for v in ("a", "b", "c"):
        book.add(v, [0.9], [1])
    assert book.versions() == ["b", "c"]  # the least recently fed version went first
    book.record_emergency_retrain(5_000)
    assert book.state("b").last_emergency_ms == book.state("c").last_emergency_ms == 5_000


def test_monitor_rejects_bad_input():
    m = AccuracyMonitor()
    with pytest.raises(ValueError, match="same length"):
        m.add([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        m.add([0.1], [2])


def test_emergency_retrain_decision():
    crit = AccuracyState(accuracy=0.3, n=200, health="CRITICAL", min_samples=100, last_emergency_ms=None)
    assert should_emergency_retrain(crit, now_ms=1_000, cooldown_s=3600)
    cooling = AccuracyState(0.3, 200, "CRITICAL", 100, last_emergency_ms=1_000)
    assert not should_emergency_retrain(cooling, now_ms=1_000 + 3_599_999, cooldown_s=3600)
    assert should_emergency_retrain(cooling, now_ms=1_000 + 3_600_000, cooldown_s=3600)
    few = AccuracyState(0.3, 99, "CRITICAL", 100, None)
    assert not should_emergency_retrain(few, now_ms=0, cooldown_s=0)
    warn = AccuracyState(0.6, 500, "WARNING", 100, None)
    assert not should_emergency_retrain(warn, now_ms=0, cooldown_s=0)


def test_monitor_records_emergency_for_cooldown():
    m = AccuracyMonitor(window=100, min_samples=20)
    m.add([0.9] * 50, [0] * 50)
    assert should_emergency_retrain(m.state(), now_ms=10_000, cooldown_s=60)
    m.record_emergency_retrain(10_000)
    assert not should_emergency_retrain(m.state(), now_ms=69_999, cooldown_s=60)
    assert should_emergency_retrain(m.state(), now_ms=70_000, cooldown_s=60)


def _pandas_trend(ts, correct, days, end_ms=None):
    df = pd.DataFrame({"ts": pd.to_datetime(ts, unit="ms", utc=True), "ok": correct.astype(float)})
    df["date"] = df["ts"].dt.date
    end = (pd.Timestamp(end_ms, unit="ms", tz="UTC") if end_ms is not None else df["ts"].max()).date()
    first = end - pd.Timedelta(days=days - 1)
    df = df[(df["date"] >= first) & (df["date"] <= end)]
    g = df.groupby("date")["ok"].agg(["mean", "size"]).sort_index()
    return [{"date": d.isoformat(), "accuracy": float(r["mean"]), "n": int(r["size"])} for d, r in g.iterrows()]


@pytest.mark.parametrize(
    ("days", "end_ms"),
    [(28, None), (5, None), (1, None), (10, 1_763_000_000_000 - 3 * DAY_MS)],
)
def test_daily_trend_matches_pandas_groupby(days, end_ms):
    rng = np.random.default_rng(1)
    start = 1_763_000_000_000 - 20 * DAY_MS
    ts = np.sort(rng.integers(start, start + 20 * DAY_MS, 5000))
    ts = ts[(ts // DAY_MS) % 7 != 3]  # some days have no rows at all
    correct = rng.random(ts.size) < 0.6
    got = daily_trend(ts, correct, days, end_ms=end_ms)
    want = _pandas_trend(ts, correct, days, end_ms)
    assert [r["date"] for r in got] == [r["date"] for r in want]
    assert [r["n"] for r in got] == [r["n"] for r in want]
    assert [r["accuracy"] for r in got] == pytest.approx([r["accuracy"] for r in want], abs=1e-12)
    assert len(got) <= days


def test_daily_trend_day_boundary_is_utc_midnight():
    # 1970-01-01 23:59:59.999, then two rows on 1970-01-02
    ts = np.array([DAY_MS - 1, DAY_MS, DAY_MS + 1])
    got = daily_trend(ts, np.array([True, False, False]), days=2)
    assert got == [
        {"date": "1970-01-01", "accuracy": 1.0, "n": 1},
        {"date": "1970-01-02", "accuracy": 0.0, "n": 2},
    ]


def test_daily_trend_empty_and_errors():
    assert daily_trend(np.array([], np.int64), np.array([], bool), 7) == []
    with pytest.raises(ValueError, match="days must be >= 1"):
        daily_trend([1], [True], 0)
    with pytest.raises(ValueError, match="same length"):
        daily_trend([1, 2], [True], 3)
