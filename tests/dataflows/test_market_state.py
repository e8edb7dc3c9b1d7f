"""Market features and labels: pandas oracles, point-in-time, ring bookkeeping."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.market_state import (
    IntervalMismatch,
    MarketConfig,
    MarketState,
    OutOfOrderCandle,
    market_features_batch,
)
from tickcast.features import MARKET_FEATURES

MINUTE = 60_000
T0 = 1_763_683_200_000
OHLCV = ["open", "high", "low", "close", "volume"]


def make_candles(n: int, seed: int, *, flats: bool = True) -> pd.DataFrame:
    """Geometric random walk 1m candles; optional flat stretches hit the RSI-50 and vol-z-0 branches."""
    rng = np.random.default_rng(seed)
    close = 0.5 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, n)))
    volume = rng.lognormal(10.0, 0.6, n)
    if flats and n > 120:
        close[60:80] = close[59]  # 20 unchanged closes: 14 zero changes -> rsi 50, zero returns
        volume[80:115] = 12_345.678  # 35 equal volumes: pstd 0 -> vol_z 0
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 1e-3, n)))
    close_time = T0 + MINUTE * np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame(
        {"open_time": close_time - MINUTE, "close_time": close_time,
         "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )  # fmt: skip


def pandas_oracle(df: pd.DataFrame) -> pd.DataFrame:
    """The MARKET_FEATURES formulas written with pandas rolling windows, by position."""
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    r = np.log(c / c.shift(1))
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1, skipna=False)
    d = c.diff()
    gain = d.clip(lower=0).rolling(14).mean()
    loss = (-d).clip(lower=0).rolling(14).mean()
    rsi = (100 * gain / (gain + loss)).mask((gain + loss) == 0, 50.0)
    mean30, std30 = v.rolling(30).mean(), v.rolling(30).std(ddof=0)
    vol_z = ((v - mean30) / std30).mask(std30 == 0, 0.0)
    return pd.DataFrame(
        {
            "ret_1": r,
            "ret_5": np.log(c / c.shift(5)),
            "ret_15": np.log(c / c.shift(15)),
            "rv_30": r.pow(2).rolling(30).sum().pow(0.5),
            "atr_14": tr.rolling(14).mean() / c,
            "rsi_14": rsi,
            "vol_z_30": vol_z,
            "hl_range": (h - lo) / c,
        }
    )


def stream(df: pd.DataFrame, config: MarketConfig | None = None) -> tuple[np.ndarray, list[tuple[int, dict]]]:
    """Feed every row through one MarketState: (features (n, 8), [(row_index, label), ...])."""
    state = MarketState(config)
    rows, labels = [], []
    for i, rec in enumerate(df[["open_time", "close_time", *OHLCV]].itertuples(index=False)):
        feats, done = state.add_candle(*rec)
        assert feats is not None and list(feats) == list(MARKET_FEATURES)
        rows.append([feats[name] for name in MARKET_FEATURES])
        labels.extend((i, lab) for lab in done)
    return np.array(rows), labels


def batch(df: pd.DataFrame) -> np.ndarray:
    return market_features_batch(*(df[col].to_numpy() for col in OHLCV))


def test_every_feature_matches_pandas_oracle() -> None:
    df = make_candles(600, seed=7)
    oracle = pandas_oracle(df)
    got = batch(df)
    streamed, _ = stream(df)
    for j, name in enumerate(MARKET_FEATURES):
        want = oracle[name].to_numpy()
        for impl, values in (("batch", got[:, j]), ("stream", streamed[:, j])):
            np.testing.assert_array_equal(np.isnan(values), np.isnan(want), err_msg=f"{impl} {name} NaN positions")
            np.testing.assert_allclose(values, want, rtol=1e-9, atol=1e-12, err_msg=f"{impl} {name}")
    # The flat stretches really exercised the special cases.
    assert (got[:, MARKET_FEATURES.index("rsi_14")] == 50.0).sum() >= 5
    assert (got[:, MARKET_FEATURES.index("vol_z_30")] == 0.0).sum() >= 5
    # First valid rows: the history each window needs (hl 1, ret_k k+1, rsi/atr 15, vol 30, rv 31 candles).
    first_valid = {name: int(np.argmax(~np.isnan(got[:, j]))) for j, name in enumerate(MARKET_FEATURES)}
    assert first_valid == {"ret_1": 1, "ret_5": 5, "ret_15": 15, "rv_30": 30, "atr_14": 14,
                           "rsi_14": 14, "vol_z_30": 29, "hl_range": 0}  # fmt: skip


def test_streaming_equals_batch_bit_for_bit_with_gaps() -> None:
    df = make_candles(700, seed=11)
    df = df.drop(index=[100, 101, 102, 250, 400]).reset_index(drop=True)  # gaps: features go by position
    streamed, _ = stream(df, MarketConfig(ring=40))
    np.testing.assert_array_equal(streamed, batch(df))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    n=st.integers(min_value=1, max_value=90),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    alter_seed=st.integers(min_value=0, max_value=2**32 - 1),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_point_in_time(n: int, seed: int, alter_seed: int, cut: float) -> None:
    df = make_candles(n, seed, flats=False)
    i = min(int(cut * n), n - 1)
    altered = df.copy()
    noise = np.random.default_rng(alter_seed).lognormal(0.0, 0.3, (n - i - 1, len(OHLCV)))
    altered.loc[i + 1 :, OHLCV] = altered.loc[i + 1 :, OHLCV].to_numpy() * noise

    original_rows, _ = stream(df, MarketConfig(ring=31))
    altered_rows, _ = stream(altered, MarketConfig(ring=31))
    np.testing.assert_array_equal(altered_rows[: i + 1], original_rows[: i + 1])
    truncated = batch(df.iloc[: i + 1])
    np.testing.assert_array_equal(original_rows[i], truncated[i])
    # The batch function is point-in-time too: row i of the full, altered history is the truncated row.
    np.testing.assert_array_equal(batch(altered)[i], truncated[i])


@pytest.mark.parametrize("horizon", [1, 3])
def test_labels_match_shift_oracle(horizon: int) -> None:
    df = make_candles(300, seed=3)
    _, labels = stream(df, MarketConfig(horizon=horizon))
    future = df["close"].shift(-horizon)
    want = df.assign(future=future, label=(future > df["close"]).astype(int)).dropna(subset=["future"])
    assert [lab["close_time"] for _, lab in labels] == want["close_time"].tolist()
    assert [lab["label"] for _, lab in labels] == want["label"].tolist()
    assert [lab["close_t"] for _, lab in labels] == want["close"].tolist()
    assert [lab["close_th"] for _, lab in labels] == want["future"].tolist()
    assert {lab["horizon"] for _, lab in labels} == {horizon}
    # A label is emitted exactly when candle T+h arrives.
    assert [row for row, _ in labels] == (want.index + horizon).tolist()
    assert 0 < want["label"].mean() < 1


@pytest.mark.parametrize("horizon", [1, 3])
def test_gaps_pair_only_candles_exactly_horizon_apart(horizon: int) -> None:
    df = make_candles(200, seed=5)
    df = df.drop(index=[20, 50, 51, 52, 53, 120, 122]).reset_index(drop=True)
    _, labels = stream(df, MarketConfig(horizon=horizon))
    by_time = df.set_index("close_time")["close"]
    partner = by_time.reindex(by_time.index + horizon * MINUTE).to_numpy()
    want = pd.DataFrame(
        {
            "close_time": by_time.index,
            "close_t": by_time.to_numpy(),
            "close_th": partner,
        }
    ).dropna()
    assert len(want) < len(df) - horizon  # the gaps did remove labels
    assert [lab["close_time"] for _, lab in labels] == want["close_time"].tolist()
    assert [lab["close_th"] for _, lab in labels] == want["close_th"].tolist()
    assert [lab["label"] for _, lab in labels] == (want["close_th"] > want["close_t"]).astype(int).tolist()


def test_duplicates_are_ignored_and_change_nothing() -> None:
    df = make_candles(150, seed=9)
    recs = list(df[["open_time", "close_time", *OHLCV]].itertuples(index=False))
    clean_rows, clean_labels = stream(df, MarketConfig(horizon=2))
    state = MarketState(MarketConfig(ring=32, horizon=2))
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i, rec in enumerate(recs):
        feats, done = state.add_candle(*rec)
        rows.append([feats[name] for name in MARKET_FEATURES])
        labels.extend(done)
        before = pickle.dumps(state)
        for j in {
            i,
            max(0, i - int(rng.integers(0, 31))),
        }:  # the newest, and one deeper in the ring
            replay = recs[j]._replace(close=recs[j].close * 1.5)  # a replay with other values is still a replay
            assert state.add_candle(*replay) == (None, [])
        assert pickle.dumps(state) == before
    np.testing.assert_array_equal(np.array(rows), clean_rows)
    assert labels == [lab for _, lab in clean_labels]


def test_out_of_order_raises_and_leaves_state_unchanged() -> None:
    state = MarketState()
    for t in (1, 2, 4, 5):  # close_time T0 + 3 minutes is missing
        state.add_candle(T0 + (t - 1) * MINUTE, T0 + t * MINUTE, 1.0, 1.1, 0.9, 1.0 + t / 100, 10.0)
    before = pickle.dumps(state)
    with pytest.raises(OutOfOrderCandle, match=r"arrived after close_time"):
        state.add_candle(T0 + 2 * MINUTE, T0 + 3 * MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    with pytest.raises(OutOfOrderCandle, match=r"older than the whole ring"):
        state.add_candle(T0 - MINUTE, T0, 1.0, 1.1, 0.9, 1.0, 10.0)
    assert pickle.dumps(state) == before
    feats, done = state.add_candle(T0 + 5 * MINUTE, T0 + 6 * MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    assert feats is not None and done[0]["close_time"] == T0 + 5 * MINUTE


def test_out_of_order_candle_evicted_from_ring_is_rejected() -> None:
    state = MarketState(MarketConfig(ring=31))
    for t in range(1, 41):
        state.add_candle(T0 + (t - 1) * MINUTE, T0 + t * MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    with pytest.raises(OutOfOrderCandle):
        state.add_candle(T0 + 4 * MINUTE, T0 + 5 * MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    assert state.add_candle(T0 + 9 * MINUTE, T0 + 10 * MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0) == (None, [])


def test_interval_taken_from_first_candle_or_config() -> None:
    state = MarketState()
    state.add_candle(T0, T0 + MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    assert state.interval_ms == MINUTE
    with pytest.raises(IntervalMismatch, match="spans 300000 ms; this state's interval is 60000 ms"):
        state.add_candle(T0 + MINUTE, T0 + 6 * MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    fixed = MarketState(MarketConfig(interval_ms=5 * MINUTE))
    with pytest.raises(IntervalMismatch):
        fixed.add_candle(T0, T0 + MINUTE, 1.0, 1.1, 0.9, 1.0, 10.0)
    with pytest.raises(IntervalMismatch, match="must be after open_time"):
        MarketState().add_candle(T0, T0, 1.0, 1.1, 0.9, 1.0, 10.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ring": 30}, "ring must be an int >= 31"), ({"horizon": 0}, "horizon"),
     ({"ring": 40, "horizon": 41}, "horizon"), ({"interval_ms": 0}, "interval_ms")],
)  # fmt: skip
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MarketConfig(**kwargs)


def test_state_is_bounded_and_pickle_round_trips() -> None:
    df = make_candles(10_000, seed=13)
    recs = list(df[["open_time", "close_time", *OHLCV]].itertuples(index=False))
    small, big = MarketState(), MarketState()
    for rec in recs[:100]:
        small.add_candle(*rec)
    for rec in recs[:-1]:
        big.add_candle(*rec)
    assert len(pickle.dumps(small)) == len(pickle.dumps(big))
    assert len(big) == 64
    restored = pickle.loads(pickle.dumps(big))
    assert restored.add_candle(*recs[-1]) == big.add_candle(*recs[-1])


def test_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    df = make_candles(50_000, seed=17)
    recs = list(df[["open_time", "close_time", *OHLCV]].itertuples(index=False))
    state = MarketState()
    state.add_candle(*recs[0])  # compile/load outside the timing
    start = time.perf_counter()
    for rec in recs[1:]:
        state.add_candle(*rec)
    rate = (len(recs) - 1) / (time.perf_counter() - start)
    start = time.perf_counter()
    batch(df)
    batch_rate = len(df) / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\nMarketState.add_candle: {rate:,.0f} candles/s; market_features_batch: {batch_rate:,.0f} rows/s")
