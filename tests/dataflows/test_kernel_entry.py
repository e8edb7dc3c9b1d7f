"""Kernels called through their compiled entry point (dataflows/kernels/entry.py): the same
results as through the dispatcher, nothing compiled in a snapshot, and a fallback to the
dispatcher when there is no entry point for the arguments' types."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from dataflows.kernels import market as km
from dataflows.kernels import sentiment as ks
from dataflows.kernels.entry import resolve
from dataflows.market_state import MarketConfig, MarketState
from dataflows.sentiment_state import SentimentConfig, SentimentState, TickBatch

STEP = 60_000


def _ticks(rng: np.random.Generator, start: int, n: int, span: int = 5 * STEP) -> TickBatch:
    """n random ticks with ts in [start, start + span), in order, ingested up to 3 s later."""
    ts = np.sort(rng.integers(start, start + span, n))
    return TickBatch(
        ts=ts,
        ingest_ts=ts + rng.integers(0, 3_000, n),
        score=rng.uniform(-1, 1, n),
        polarity=rng.integers(-1, 2, n).astype(np.int8),
        weight=rng.uniform(0, 2, n),
        id_hash=rng.integers(0, 2**62, n),
    )


def _sentiment_run(state: SentimentState, seed: int, rounds: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for r in range(rounds):
        batch = _ticks(rng, r * 5 * STEP, 40)
        state.add_ticks(batch)
        rows += state.advance(int(batch.ingest_ts.max()))
    return rows


def _market_run(state: MarketState, start: int, n: int) -> list[tuple]:
    out = []
    for i in range(start, start + n):
        close = 100 + np.sin(i / 3)
        feats, labels = state.add_candle(i * STEP, (i + 1) * STEP, close, close + 0.5, close - 0.5, close, 10 + i % 7)
        out.append((feats, labels))
    return out


def test_snapshots_hold_no_compiled_kernel_and_restored_states_go_on_alike() -> None:
    sentiment = SentimentState(SentimentConfig())
    _sentiment_run(sentiment, 1, 6)
    assert sentiment._close_kernel not in (None, ks.close_through)  # resolved by the first close
    assert "_close_kernel" not in sentiment.__getstate__()
    restored = pickle.loads(pickle.dumps(sentiment))
    assert restored._close_kernel is None
    assert _sentiment_run(restored, 2, 6) == _sentiment_run(sentiment, 2, 6)

    market = MarketState(MarketConfig())
    _market_run(market, 0, 40)
    assert market._push not in (None, km.push_candle)
    assert "_push" not in market.__getstate__()
    back = pickle.loads(pickle.dumps(market))
    assert back._push is None
    assert _market_run(back, 40, 40) == _market_run(market, 40, 40)


def test_a_snapshot_written_before_entry_points_loads() -> None:
    market = MarketState(MarketConfig())
    _market_run(market, 0, 35)
    old = dict(market.__getstate__())  # what the previous version pickled: the same dict
    resumed = MarketState.__new__(MarketState)
    resumed.__setstate__(pickle.loads(pickle.dumps(old)))
    assert _market_run(resumed, 35, 30) == _market_run(market, 35, 30)


def test_the_entry_point_gives_what_the_dispatcher_gives() -> None:
    times, values, count = np.zeros((64, 2), np.int64), np.full((5, 64), np.nan), np.zeros(1, np.int64)
    feats, label = np.empty(km.N_FEATURES), np.empty(1)
    args = (times, values, count, 0, STEP, 1.0, 1.5, 0.5, 1.2, 3.0, STEP, feats, label)
    assert km.push_candle(*args) == km.ACCEPTED
    entry = resolve(km.push_candle, args)
    assert entry is not km.push_candle
    args2 = (times, values, count, STEP, 2 * STEP, 1.2, 1.6, 1.1, 1.3, 4.0, STEP, feats, label)
    copy = (times.copy(), values.copy(), count.copy())
    assert entry(*args2) == km.ACCEPTED_WITH_LABEL
    got = (times.copy(), values.copy(), count.copy(), feats.copy(), label.copy())
    times[:], values[:], count[:] = copy
    assert km.push_candle(*args2) == km.ACCEPTED_WITH_LABEL
    for a, b in zip(got, (times, values, count, feats, label), strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_without_an_entry_point_for_the_types_the_dispatcher_is_kept() -> None:
    def plain(x: int) -> int:
        return x

    assert resolve(plain, (1,)) is plain  # not a dispatcher (JIT disabled)
    never = (np.zeros(3, np.float32), np.zeros(3, np.int32), 1, 1, 1)  # types it is never compiled for
    assert resolve(ks.entry_bars, never) is ks.entry_bars
    ts = np.zeros(3, np.int64)
    ks.entry_bars(ts, ts, 1, 1, 1)
    assert resolve(ks.entry_bars, (ts, ts, 1, 1, 1)) is not ks.entry_bars  # compiled for these
    assert resolve(ks.entry_bars, (ts, ts, 1, 1, 1), scalars=(float,)) is ks.entry_bars  # ints not allowed
    assert resolve(ks.entry_bars, (ts, ts, np.int64(1), 1, 1)) is ks.entry_bars  # not exactly an int


def test_states_after_the_first_get_the_entry_point_without_numba_typeof(monkeypatch) -> None:
    """A replay resolves once per symbol; Numba's typeof (~15 µs an array) ran 1,000 times in a
    1,000-symbol replay (9 % of it). Same argument types: same entry point, no typeof."""
    from dataflows.kernels import entry

    ts = np.zeros(4, np.int64)
    ks.entry_bars(ts, ts, 1, 1, 1)
    first = resolve(ks.entry_bars, (ts, ts, 1, 1, 1))
    assert first is not ks.entry_bars

    def no_typeof(value: object) -> object:
        raise AssertionError("typeof called for arguments already resolved")

    monkeypatch.setattr(entry, "typeof", no_typeof)
    other = np.arange(9, dtype=np.int64)  # another state's arrays: other length, same type
    assert resolve(ks.entry_bars, (other, other[:5], 7, 60_000, 2)) is first
    # another type is not answered from the cache: it goes to typeof (here, the failing one)
    with pytest.raises(AssertionError, match="typeof called"):
        resolve(ks.entry_bars, (ts.astype(np.int32), ts, 1, 1, 1))
    # an int outside int64 is typed by value (uint64), never from the cache
    with pytest.raises(AssertionError, match="typeof called"):
        resolve(ks.entry_bars, (ts, ts, 2**63, 1, 1))


def test_an_argument_numba_cannot_fingerprint_falls_back_to_typeof() -> None:
    odd = np.zeros(3, object)
    assert resolve(ks.entry_bars, (odd, odd, 1, 1, 1)) is ks.entry_bars
