"""Simulator: payload shapes, knobs, determinism, pacing, and the strength of the hidden signal.

Oracles are independent of the simulator: pandas EWM for the sentiment feature,
scikit-learn for the model and ROC-AUC, a hand-written validator for malformed
records, and direct NumPy for ECE.
"""

from __future__ import annotations

import json
import math
import time
from itertools import islice

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dataflows.simulator import (
    MALFORMED_KINDS,
    SimConfig,
    generate,
    generate_labeled,
    live_records,
    write_files,
)

START = 1_763_683_200_000
HOUR = 3_600_000
TICK_KEYS = {"symbol", "ts", "score", "polarity", "provider", "meta", "id", "ingest_ts"}
CANDLE_KEYS = {"symbol", "interval", "open_time", "close_time", "open", "high", "low", "close", "volume", "ingest_ts"}
EWM_W_MS = 15 * 60_000  # weight exp(-(T - ts)/W)  <=>  pandas halflife = W·ln2
GRACE_MS = 2_000


def is_candle(rec: dict) -> bool:
    return "open_time" in rec or "interval" in rec


def split(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ticks = pd.DataFrame([r for r in records if not is_candle(r)])
    candles = pd.DataFrame([r for r in records if is_candle(r)])
    return ticks, candles


@pytest.fixture(scope="module")
def day20() -> list[dict]:
    t0 = time.perf_counter()
    records = list(generate(SimConfig(symbols=20, hours=24.0, seed=3)))
    elapsed = time.perf_counter() - t0
    assert elapsed < 6.0, f"20 symbols x 24 h took {elapsed:.1f}s"
    return records


# --- shapes -------------------------------------------------------------------------


def test_tick_and_candle_payloads_follow_design_section_3() -> None:
    records = list(generate(SimConfig(symbols=6, hours=2.0, seed=1)))
    ticks, candles = split(records)
    assert (
        set(ticks.symbol)
        == set(candles.symbol)
        == {"BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "ADAUSDT", "SYM005USDT"}
    )
    for r in records:
        assert set(r) == (CANDLE_KEYS if is_candle(r) else TICK_KEYS)
        json.dumps(r, allow_nan=False)  # plain JSON, no NaN tokens

    score = ticks.score.to_numpy(float)
    assert ((score >= -1) & (score <= 1)).all()
    np.testing.assert_array_equal(score, np.round(score, 4))
    np.testing.assert_array_equal(ticks.polarity, np.sign(score).astype(int))
    assert ticks.id.is_unique
    assert (
        ticks.id
        == ticks.provider
        + "-"
        + ticks.symbol
        + "-"
        + ticks.ts.astype(str)
        + "-"
        + ticks.id.str.rsplit("-", n=1).str[-1]
    ).all()
    delay = ticks.ingest_ts - ticks.ts
    assert delay.between(50, 3_000).all()
    assert ticks.ts.between(START, START + 2 * HOUR - 1).all()

    assert (candles.interval == "1m").all()
    assert (candles.open_time % 60_000 == 0).all()
    assert (candles.close_time - candles.open_time == 60_000).all()
    assert (candles.ingest_ts - candles.close_time).between(100, 1_500).all()
    assert (candles.high >= candles[["open", "close"]].max(axis=1)).all()
    assert (candles.low <= candles[["open", "close"]].min(axis=1)).all()
    assert (candles[["open", "high", "low", "close", "volume"]] > 0).all().all()
    assert len(candles) == 6 * 120


def test_stream_is_ordered_by_ingest_and_candles_are_contiguous(day20: list[dict]) -> None:
    ingest = np.array([r["ingest_ts"] for r in day20])
    assert (np.diff(ingest) >= 0).all()
    _, candles = split(day20)
    for sym, c in candles.groupby("symbol", sort=False):
        c = c.sort_values("open_time")
        assert len(c) == 24 * 60, sym
        assert (np.diff(c.open_time) == 60_000).all(), sym
        np.testing.assert_array_equal(c.open.to_numpy()[1:], c.close.to_numpy()[:-1])


def test_candles_look_like_one_minute_crypto_bars(day20: list[dict]) -> None:
    _, candles = split(day20)
    for sym, c in candles.groupby("symbol"):
        c = c.sort_values("open_time")
        ret = np.diff(np.log(c.close.to_numpy(float)))
        assert 0.0005 <= ret.std() <= 0.003, (sym, ret.std())
        # stochastic volatility: |returns| cluster (lag-1 autocorrelation of |r| over 10-bar means)
        absret = pd.Series(np.abs(ret)).rolling(10).mean().dropna()
        assert absret.autocorr(lag=10) > 0.1, sym
        # volume goes with the size of the move
        rho = pd.Series(c.volume.to_numpy()[1:]).corr(pd.Series(np.abs(ret)), method="spearman")
        assert rho > 0.15, (sym, rho)
        rel = ((c.high - c.low) / c.close).to_numpy()
        assert 0 < np.median(rel) < 0.01, sym


# --- determinism --------------------------------------------------------------------


def test_same_config_same_records_other_seed_different() -> None:
    cfg = SimConfig(symbols=3, hours=1.5, seed=11, duplicate_rate=0.05, late_rate=0.05, malformed_rate=0.05)
    assert list(generate_labeled(cfg)) == list(generate_labeled(cfg))
    a = list(generate(SimConfig(symbols=3, hours=1.5, seed=11)))
    b = list(generate(SimConfig(symbols=3, hours=1.5, seed=12)))
    assert a != b
    assert {r["close"] for r in a if is_candle(r)}.isdisjoint({r["close"] for r in b if is_candle(r)} - {None})


def test_shorter_run_is_an_event_time_prefix_and_symbols_are_independent() -> None:
    long = list(generate(SimConfig(symbols=4, hours=3.0, seed=5)))
    short = list(generate(SimConfig(symbols=2, hours=1.25, seed=5)))
    end = START + 1.25 * HOUR

    def in_short(r: dict) -> bool:
        t = r["close_time"] if is_candle(r) else r["ts"]
        return r["symbol"] in ("BTCUSDT", "ETHUSDT") and (t <= end if is_candle(r) else t < end)

    key = lambda r: (r["ingest_ts"], json.dumps(r, sort_keys=True))
    assert sorted(short, key=key) == sorted(filter(in_short, long), key=key)


def test_unbounded_run_streams_across_chunks_like_a_bounded_one() -> None:
    bounded = list(generate(SimConfig(symbols=2, hours=3.0, seed=2)))
    n = sum(r["ingest_ts"] < START + 3 * HOUR for r in bounded)
    unbounded = list(islice(generate(SimConfig(symbols=2, hours=math.inf, seed=2)), n + 500))
    assert unbounded[:n] == bounded[:n]
    assert unbounded[-1]["ingest_ts"] > START + 3 * HOUR


# --- fault knobs --------------------------------------------------------------------


def test_fault_knobs_leave_the_market_untouched() -> None:
    clean = list(generate(SimConfig(symbols=3, hours=2.0, seed=4)))
    noisy = list(generate(SimConfig(symbols=3, hours=2.0, seed=4, duplicate_rate=0.2, late_rate=0.2)))
    assert [r for r in clean if is_candle(r)] == [r for r in noisy if is_candle(r)]
    strip = lambda rs: sorted((r["id"], r["ts"], r["score"]) for r in rs if not is_candle(r))
    assert strip(clean) == sorted(set(strip(noisy)))


def test_duplicates_repeat_the_same_tick_later() -> None:
    ticks, _ = split(list(generate(SimConfig(symbols=4, hours=4.0, seed=8, duplicate_rate=0.1))))
    counts = ticks.id.value_counts()
    assert counts.max() == 2
    n_unique = len(counts)
    share = (counts == 2).sum() / n_unique
    assert abs(share - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n_unique)
    for _, g in ticks[ticks.id.isin(counts[counts == 2].index)].groupby("id"):
        first, second = g.sort_values("ingest_ts").to_dict("records")
        gap = second.pop("ingest_ts") - first.pop("ingest_ts")
        assert first == second and 0 < gap <= 120_000


def test_late_ticks_exceed_the_latency_limit_at_the_configured_rate() -> None:
    ticks, _ = split(list(generate(SimConfig(symbols=4, hours=4.0, seed=9, late_rate=0.05))))
    lag = ticks.ingest_ts - ticks.ts
    late = lag > 600_000
    assert abs(late.mean() - 0.05) < 4 * math.sqrt(0.05 * 0.95 / len(ticks))
    assert lag[late].between(600_001, 1_200_000).all()
    assert lag[~late].between(50, 3_000).all()


def test_outage_silences_exactly_one_provider_in_its_span() -> None:
    lo, hi = START + HOUR // 2, START + 2 * HOUR
    base, _ = split(list(generate(SimConfig(symbols=3, hours=3.0, seed=6))))
    out, _ = split(list(generate(SimConfig(symbols=3, hours=3.0, seed=6, outage=("twitter", lo, hi)))))
    in_span = (base.provider == "twitter") & (base.ts >= lo) & (base.ts < hi)
    assert in_span.sum() > 100
    assert sorted(out.id) == sorted(base.id[~in_span])
    assert not ((out.provider == "twitter") & out.ts.between(lo, hi - 1)).any()


def why_invalid(r: dict) -> str | None:
    """An independent validator for DESIGN §3; returns the malformed kind it detects."""
    keys = CANDLE_KEYS if is_candle(r) else TICK_KEYS
    if set(r) != keys:
        return "missing_field"
    nums = ("open", "high", "low", "close", "volume") if is_candle(r) else ("score",)
    for k in nums:
        v = r[k]
        if v is None or v == "NaN":
            return "nan_score"
        if isinstance(v, str):
            return "string_number"
        if not math.isfinite(v):
            return "nan_score"
    if is_candle(r):
        if r["interval"] != "1m":
            return "unknown_interval"
        if r["high"] < r["low"]:
            return "high_below_low"
    elif not -1 <= r["score"] <= 1:
        return "score_out_of_range"
    return None


def test_malformed_records_are_unmarked_but_each_kind_is_caught_by_a_validator() -> None:
    labeled = list(generate_labeled(SimConfig(symbols=3, hours=3.0, seed=10, malformed_rate=0.05)))
    seen = {kind for _, kind in labeled if kind}
    assert seen == set(MALFORMED_KINDS)
    for rec, kind in labeled:
        assert why_invalid(rec) == kind, (rec, kind)
        assert "malformed" not in json.dumps(rec)
    share = sum(k is not None for _, k in labeled) / len(labeled)
    assert abs(share - 0.05) < 4 * math.sqrt(0.05 * 0.95 / len(labeled))
    assert (np.diff([r["ingest_ts"] for r, _ in labeled]) >= 0).all()


def test_write_files_splits_by_kind_and_counts(tmp_path) -> None:
    cfg = SimConfig(symbols=2, hours=1.0, seed=3, malformed_rate=0.05)
    counts = write_files(cfg, tmp_path)
    lines = {name: (tmp_path / f"{name}.jsonl").read_text().splitlines() for name in ("ticks", "candles")}
    parsed = {name: [json.loads(x) for x in ls] for name, ls in lines.items()}
    assert all(not is_candle(r) for r in parsed["ticks"]) and all(is_candle(r) for r in parsed["candles"])
    bad = sum(why_invalid(r) is not None for rs in parsed.values() for r in rs)
    assert counts == {"ticks": len(lines["ticks"]), "candles": len(lines["candles"]), "malformed": bad}
    assert bad > 0 and len(lines["candles"]) == 120
    with pytest.raises(ValueError, match="finite"):
        write_files(SimConfig(hours=math.inf), tmp_path)


def test_config_errors_say_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"late_rate must be a float in \[0, 1\]. Got 1.5"):
        SimConfig(late_rate=1.5)
    with pytest.raises(ValueError, match="start_ms must be a multiple of 60000"):
        SimConfig(start_ms=START + 1)
    with pytest.raises(ValueError, match="outage"):
        SimConfig(outage=("telegram", START, START + 1))


# --- the hidden signal --------------------------------------------------------------


def oracle_rows(records: list[dict]) -> pd.DataFrame:
    """Per candle close T: leak-free EWM of tick scores (ts < T, ingest ≤ T + grace), ret_1, label.

    EWM(T) = Σ e^{-(T-tᵢ)/W}·xᵢ / Σ e^{-(T-tᵢ)/W}, via prefix sums minus the few
    ticks not yet ingested at T + grace; `test_oracle_matches_pandas_ewm` pins it to pandas.
    """
    ticks, candles = split(records)
    rows = []
    for sym, c in candles.groupby("symbol"):
        c = c.sort_values("open_time")
        t = ticks[ticks.symbol == sym].sort_values("ts", kind="stable")
        ts, x, ing = (t[k].to_numpy() for k in ("ts", "score", "ingest_ts"))
        T = c.close_time.to_numpy()
        e = np.exp((ts - ts[0]) / EWM_W_MS)
        num = np.concatenate([[0.0], np.cumsum(e * x)])
        den = np.concatenate([[0.0], np.cumsum(e)])
        n_before = np.searchsorted(ts, T, "left")
        num, den = num[n_before], den[n_before]
        # ticks with ts < T but ingested after T + grace: remove them from every such T
        for i in np.flatnonzero(ing - GRACE_MS > ts):
            j = np.flatnonzero((T > ts[i]) & (T < ing[i] - GRACE_MS))
            num[j] -= e[i] * x[i]
            den[j] -= e[i]
        close = c.close.to_numpy(float)
        ewm = np.full(len(T), np.nan)
        np.divide(num, den, out=ewm, where=den > 0)
        rows.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "T": T,
                    "ewm": ewm,
                    "ret1": np.concatenate([[np.nan], np.diff(np.log(close))]),
                    "y": np.concatenate([close[1:] > close[:-1], [False]]).astype(int),
                    "has_next": np.arange(len(T)) < len(T) - 1,
                }
            )
        )
    d = pd.concat(rows, ignore_index=True)
    return d[d.has_next & d["ewm"].notna() & d.ret1.notna()]


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    b = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum((b == k).mean() * abs(y[b == k].mean() - p[b == k].mean()) for k in range(bins) if (b == k).any()))


def test_oracle_matches_pandas_ewm(day20: list[dict]) -> None:
    ticks, _ = split(day20)
    d = oracle_rows([r for r in day20 if r["symbol"] in ("BTCUSDT", "SYM007USDT")])
    rng = np.random.default_rng(0)
    for row in d.iloc[rng.choice(len(d), 25, replace=False)].itertuples():
        t = ticks[(ticks.symbol == row.symbol) & (ticks.ts < row.T) & (ticks.ingest_ts <= row.T + GRACE_MS)]
        t = t.sort_values("ts")
        expected = (
            t.score.ewm(
                halflife=pd.Timedelta(milliseconds=EWM_W_MS * math.log(2)), times=pd.to_datetime(t.ts, unit="ms")
            )
            .mean()
            .iloc[-1]
        )
        assert row.ewm == pytest.approx(expected, rel=1e-7, abs=1e-10)


def fit_and_score(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    model = LogisticRegression().fit(train[["ewm", "ret1"]], train.y)
    p = model.predict_proba(test[["ewm", "ret1"]])[:, 1]
    return roc_auc_score(test.y, p), ece(p, test.y.to_numpy())


def test_sentiment_before_close_predicts_the_next_candle_weakly_and_calibrated(day20: list[dict]) -> None:
    d = oracle_rows(day20)
    cut = d["T"].min() + 0.6 * (d["T"].max() - d["T"].min())
    train, test = d[d["T"] < cut], d[d["T"] >= cut]
    assert len(test) >= 5000
    auc, err = fit_and_score(train, test)
    assert 0.68 <= auc < 0.85, auc
    assert err <= 0.03, err


def test_regime_shift_breaks_a_model_trained_before_it() -> None:
    shift = START + 12 * HOUR
    d = oracle_rows(list(generate(SimConfig(symbols=20, hours=24.0, seed=3, regime_shift_ms=shift))))
    # candle T's label is the candle opening at T, so rows with T >= shift live in the new regime
    auc, err = fit_and_score(d[d["T"] < shift], d[d["T"] >= shift])
    assert auc < 0.5, auc
    assert err > 0.10, err


# --- live pacing ----------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t, self.sleeps = t, []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert 0 < s <= 0.25
        self.sleeps.append(s)
        self.t += s


def test_live_records_shift_to_now_and_pace_by_speed() -> None:
    cfg = SimConfig(symbols=2, hours=0.5, seed=1)
    now0_s = 1_800_000_123.456
    clock = FakeClock(now0_s)
    offset = (int(now0_s * 1000) // 60_000) * 60_000 - START
    original = list(generate(cfg))
    live = []
    for rec in live_records(cfg, 60.0, clock, sleep=clock.sleep):
        due_ms = now0_s * 1000 + (rec["ingest_ts"] - now0_s * 1000) / 60.0
        assert clock() * 1000 >= due_ms - 1e-3
        assert clock() * 1000 <= max(due_ms, now0_s * 1000) + 1e-3  # not held back either
        live.append(rec)
    assert len(live) == len(original)
    for a, b in zip(original, live):
        for f in ("ts", "open_time", "close_time", "ingest_ts"):
            if f in a:
                assert b[f] - a[f] == offset
        assert {k: v for k, v in a.items() if k not in ("ts", "open_time", "close_time", "ingest_ts")} == {
            k: v for k, v in b.items() if k not in ("ts", "open_time", "close_time", "ingest_ts")
        }
    assert all(r["open_time"] % 60_000 == 0 for r in live if is_candle(r))
    # half an hour of simulated time at 60x is about 30 s of wall time
    assert 29.0 < clock.t - now0_s < 31.0
    with pytest.raises(ValueError, match="speed must be > 0"):
        next(live_records(cfg, 0.0, clock, sleep=clock.sleep))
