"""Sentiment engine: pandas/NumPy oracles, leak-free and order-free properties, bounded state."""

from __future__ import annotations

import itertools
import math
import pickle
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.sentiment_state import (
    SentimentConfig,
    SentimentState,
    TickBatch,
    hash_id,
)
from tickcast.features import OPTIONAL_SENTIMENT_FEATURES, SENTIMENT_FEATURES

STEP = 60_000
GRACE = 2_000
T0 = 1_763_683_200_000  # a multiple of STEP
WINDOWS = {"5m": 300, "15m": 900, "60m": 3600}
EMA_COLS = [f"sent_ema_{n}" for n in WINDOWS]


# -- helpers ---------------------------------------------------------------------------
def make_ticks(n: int, seed: int, *, max_delay: int = 0, weights=(1.0,)) -> pd.DataFrame:
    """Irregular ticks: exponential gaps, some 5-12 min silences (empty bars), some ts on a bar boundary."""
    rng = np.random.default_rng(seed)
    gaps = np.where(rng.random(n) < 0.05, rng.integers(300_000, 720_000, n), rng.exponential(20_000, n))
    ts = T0 + 1_234 + np.cumsum(gaps).astype(np.int64)
    ts[::17] = ts[::17] // STEP * STEP
    ts = np.sort(ts)
    score = rng.uniform(-1, 1, n)
    return pd.DataFrame(
        {
            "ts": ts,
            "ingest_ts": ts + rng.integers(0, max_delay + 1, n),
            "score": score,
            "polarity": np.where(np.abs(score) < 0.1, 0, np.sign(score)).astype(np.int8),
            "weight": rng.choice(np.asarray(weights, float), n),
            "id": [f"t{seed}-{i}" for i in range(n)],
        }
    )


def batch_of(df: pd.DataFrame) -> TickBatch:
    return TickBatch.from_records(df.to_dict("records"))


def run_all(df: pd.DataFrame, end_wm: int, cfg: SentimentConfig | None = None) -> tuple[SentimentState, list[dict]]:
    state = SentimentState(cfg or SentimentConfig())
    status = state.add_ticks(batch_of(df))
    assert (status == 0).all()
    return state, state.advance(end_wm)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_rows_identical(r1: list[dict], r2: list[dict]) -> None:
    assert [r["bar_end"] for r in r1] == [r["bar_end"] for r in r2]
    for x, y in zip(r1, r2, strict=True):
        bad = {c: (x[c], y[c]) for c in x if not same(x[c], y[c])}
        assert not bad, f"bar {x['bar_end']}: {bad}"


def close(got, want, rtol: float = 1e-12, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=rtol, atol=atol, equal_nan=True)


# -- EMA oracles -----------------------------------------------------------------------
def test_ema_equals_pandas_ewm_at_the_last_tick_before_each_bar():
    df = make_ticks(1_500, seed=1)
    _, rows = run_all(df, int(df.ts.max()) + 10 * STEP)
    # pandas converts the halflife to an integer count of the times' unit (ms would truncate 207944.15 ms)
    # and the times to float64 (at 2025 epochs in ns, ulp 256 ns). Hand it ns times relative to T0:
    # the EMA is invariant under a time shift.
    times = pd.to_datetime(df.ts - T0, unit="ms").astype("datetime64[ns]")
    bar_ends = np.array([r["bar_end"] for r in rows])
    last = np.searchsorted(df.ts.to_numpy(), bar_ends, side="left") - 1  # last row with ts < b
    assert last.min() >= 0 and len(rows) > 1_000
    for name, w in WINDOWS.items():
        ewm = df.score.ewm(halflife=pd.Timedelta(seconds=w * math.log(2)), times=times).mean().to_numpy()
        got = np.array([r[f"sent_ema_{name}"] for r in rows])
        # atol floor: a mean that cancels to ~1e-4 carries pandas' ~1e-13 absolute recursion error
        np.testing.assert_allclose(got, ewm[last], rtol=1e-9, atol=1e-12)


def test_trust_weighted_ema_equals_direct_sum_over_the_leak_free_set():
    """Delays up to 90 s: many ticks miss their own bar and enter the EMA one or two bars later."""
    df = make_ticks(800, seed=2, max_delay=90_000, weights=(0.2, 1.0, 3.0))
    _, rows = run_all(df, int(df.ingest_ts.max()) + 3 * STEP)
    ts, ing, s, w = (df[c].to_numpy() for c in ("ts", "ingest_ts", "score", "weight"))
    for r in rows:
        b = r["bar_end"]
        sel = (ts < b) & (ing <= b + GRACE)  # DESIGN §5, literally
        for name, win in WINDOWS.items():
            ww = w[sel] * np.exp(-(b - ts[sel]) / (win * 1000.0))
            want = np.sum(ww * s[sel]) / np.sum(ww) if sel.any() else np.nan
            close(r[f"sent_ema_{name}"], want, rtol=1e-11)


def test_late_mover_counts_in_the_ema_but_not_in_any_bar():
    state = SentimentState()
    on_time = pd.DataFrame(
        {"ts": [T0 + 5_000], "ingest_ts": [T0 + 5_000], "score": [0.8], "polarity": [1], "weight": [1.0], "id": ["a"]}
    )
    state.add_ticks(batch_of(on_time))
    rows = state.advance(T0 + 3 * STEP + GRACE)
    assert [r["bar_end"] for r in rows] == [T0 + STEP, T0 + 2 * STEP, T0 + 3 * STEP]
    straggler = pd.DataFrame(
        {
            "ts": [T0 + 30_000],
            "ingest_ts": [T0 + 3 * STEP + 10_000],
            "score": [-0.6],
            "polarity": [-1],
            "weight": [2.0],
            "id": ["b"],
        }
    )
    assert state.add_ticks(batch_of(straggler)).tolist() == [0]
    (r,) = state.advance(T0 + 4 * STEP + GRACE)
    b = T0 + 4 * STEP
    assert r["sent_cnt"] == 0 and r["imputed"] == 1 and r["sent_score"] == 0.8  # ffill; the tick is not in the bar
    for name, win in WINDOWS.items():
        w = np.array([1.0, 2.0]) * np.exp(-(b - np.array([T0 + 5_000, T0 + 30_000])) / (win * 1000.0))
        close(r[f"sent_ema_{name}"], (0.8 * w[0] - 0.6 * w[1]) / w.sum())
    assert state.bar_at(T0 + STEP)["sent_cnt"] == 1  # the old bar stays closed as it was


def test_composite_is_the_weighted_sum_of_emas_and_nan_without_weights():
    df = make_ticks(200, seed=4)
    _, rows = run_all(df, int(df.ts.max()) + STEP, SentimentConfig(agg_weights={"5m": 0.5, "60m": 0.25}))
    for r in rows:
        close(r["sent_composite"], 0.5 * r["sent_ema_5m"] + 0.25 * r["sent_ema_60m"], rtol=1e-15, atol=0)
    _, rows = run_all(df, int(df.ts.max()) + STEP)
    assert all(math.isnan(r["sent_composite"]) for r in rows)


# -- bar fields ------------------------------------------------------------------------
def bar_oracle(df: pd.DataFrame, impute: str, bar_ends: np.ndarray) -> pd.DataFrame:
    g = df.assign(
        bar_end=(df.ts // STEP + 1) * STEP, ws=df.weight * df.score, pos=(df.polarity == 1).astype(float)
    ).groupby("bar_end")
    agg = pd.DataFrame({"cnt": g.size(), "score": g.ws.sum() / g.weight.sum(), "pos": g.pos.mean()})
    agg = agg.reindex(bar_ends)
    score, pos = agg.score, agg.pos
    if impute == "ffill":
        score, pos = score.ffill(), pos.ffill()
    elif impute == "zero":
        score, pos = score.fillna(0.0), pos.fillna(0.0)
    return pd.DataFrame(
        {
            "sent_cnt": agg.cnt.fillna(0).astype(int),
            "sent_score": score,
            "sent_pos_ratio": pos,
            "sent_d1": score - score.shift(1),
            "sent_d5": score - score.shift(5),
            # two-pass nanstd per window: pandas' online rolling std leaves ~1e-8 on a window of equal values
            "sent_vol_30": score.rolling(30, min_periods=2).apply(np.nanstd, raw=True),
            "imputed": agg.cnt.isna().astype(int),
        },
        index=bar_ends,
    )


@pytest.mark.parametrize("impute", ["ffill", "zero", "none"])
def test_bar_fields_match_pandas_groupby(impute):
    """Ingest within grace, so every tick lands in the bar its ts belongs to."""
    df = make_ticks(1_200, seed=5, max_delay=GRACE, weights=(0.5, 1.0, 2.0))
    _, rows = run_all(df, int(df.ts.max()) + 40 * STEP, SentimentConfig(impute=impute))
    got = pd.DataFrame(rows).set_index("bar_end")
    first = (df.ts.min() // STEP + 1) * STEP
    assert got.index[0] == first and np.all(np.diff(got.index) == STEP)
    want = bar_oracle(df, impute, got.index.to_numpy())
    assert got.sent_cnt.tolist() == want.sent_cnt.tolist() and got.imputed.tolist() == want.imputed.tolist()
    assert 0 < want.imputed.sum() < len(want) - 100  # the data has both empty and busy bars
    for c in ("sent_score", "sent_pos_ratio", "sent_d1", "sent_d5", "sent_vol_30"):
        close(got[c], want[c])
    if impute == "none":
        assert got.sent_score.isna().sum() == want.imputed.sum()


@settings(max_examples=100, deadline=None)
@given(k=st.integers(0, 10_000), off=st.one_of(st.sampled_from([0, 1, STEP - 1]), st.integers(0, STEP - 1)))
def test_bar_boundary_tick_belongs_to_the_bar_ending_one_step_later(k, off):
    ts = T0 + k * STEP + off
    state = SentimentState()
    state.add_ticks(TickBatch(ts=[ts], ingest_ts=[ts], score=[0.3], polarity=[1], weight=[1.0], id_hash=[1]))
    end = T0 + (k + 1) * STEP
    assert state.advance(end + GRACE - 1) == []  # not closed before b + grace
    (row,) = state.advance(end + GRACE)
    assert row["bar_end"] == end and row["sent_cnt"] == 1 and row["sent_score"] == 0.3
    assert state.bar_at(T0 + k * STEP) is None and state.last_bar_end == end


# -- dedup and late ----------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 4),
                st.one_of(
                    st.integers(0, 30_000), st.integers(0, 6).map(lambda i: 5_000 * i)
                ),  # gaps of exactly the window
                st.one_of(st.integers(0, 8_000), st.sampled_from([5_000, 5_001])),  # latency at the limit
            ),
            min_size=1,
            max_size=25,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_dedup_and_late_follow_the_rules(batches):
    """Oracle: an unbounded dict of the last accepted ingest time per id; ingest never runs backwards across batches."""
    cfg = SentimentConfig(dedup_window_ms=10_000, max_latency_ms=5_000)
    state = SentimentState(cfg)
    seen: dict[str, int] = {}
    base, n_ok = T0, 0
    for batch in batches:
        ids = [f"id{i}" for i, _, _ in batch]
        ingest = [base + off for _, off, _ in batch]
        ts = [ing - lat for ing, (_, _, lat) in zip(ingest, batch, strict=True)]
        expected = []
        for tid, ing, t in zip(ids, ingest, ts, strict=True):
            if ing - t > cfg.max_latency_ms:
                expected.append(2)
            elif tid in seen and ing - seen[tid] <= cfg.dedup_window_ms:
                expected.append(1)
            else:
                seen[tid] = ing
                expected.append(0)
        recs = [
            {"ts": t, "ingest_ts": i, "score": 0.0, "polarity": 0, "id": d}
            for t, i, d in zip(ts, ingest, ids, strict=True)
        ]
        assert state.add_ticks(TickBatch.from_records(recs)).tolist() == expected
        n_ok += expected.count(0)
        base = max(ingest)
    assert state.n_pending == state.n_accepted == n_ok
    assert state.n_duplicate + state.n_late + n_ok == sum(map(len, batches))


# -- order-free and leak-free properties ---------------------------------------------------
@st.composite
def tick_frames(draw, prefix: str = "t", max_size: int = 40) -> pd.DataFrame:
    n = draw(st.integers(1, max_size))
    when = st.one_of(st.integers(0, 20 * STEP), st.integers(0, 20).map(lambda i: i * STEP))
    rows = []
    for i in range(n):
        ts = T0 + draw(when)
        delay = draw(st.one_of(st.integers(0, GRACE), st.integers(0, 9 * STEP)))
        rows.append(
            {
                "ts": ts,
                "ingest_ts": ts + delay,
                "score": draw(st.floats(-1, 1, allow_nan=False)),
                "polarity": draw(st.sampled_from([-1, 0, 1])),
                "weight": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
                "id": f"{prefix}{i}",
            }
        )
    return pd.DataFrame(rows)


def split(df: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    edges = sorted({0, len(df), *(c % (len(df) + 1) for c in cuts)})
    return [df.iloc[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=80, deadline=None)
@given(df=tick_frames(), data=st.data())
def test_any_arrival_order_respecting_the_watermark_gives_identical_bars(df, data):
    """Exact equality, NaN-aware: movers of a bar are folded in a canonical order, so sums match bit for bit."""
    end = int(df.ingest_ts.max()) + 12 * STEP
    # live: ingest order, chunked, watermark just below the next unseen ingest time after each chunk
    live = SentimentState()
    live_rows: list[dict] = []
    chunks = split(df.sort_values("ingest_ts", kind="stable"), data.draw(st.lists(st.integers(0, 60), max_size=6)))
    for i, chunk in enumerate(chunks):
        live.add_ticks(batch_of(chunk))
        if i + 1 < len(chunks):
            live_rows += live.advance(int(chunks[i + 1].ingest_ts.min()) - 1)
    live_rows += live.advance(end)
    # replay: any permutation, any split, one advance at the end
    perm = data.draw(st.permutations(range(len(df))))
    replay = SentimentState()
    for chunk in split(df.iloc[list(perm)], data.draw(st.lists(st.integers(0, 60), max_size=6))):
        replay.add_ticks(batch_of(chunk))
    replay_rows = replay.advance(end)
    assert live_rows and replay.n_pending == live.n_pending == 0
    assert_rows_identical(live_rows, replay_rows)


@settings(max_examples=80, deadline=None)
@given(base=tick_frames(prefix="b"), data=st.data())
def test_poison_ticks_never_change_a_closed_bar(base, data):
    """Ticks with ts >= b, or ts < b but ingested after b + grace, cannot touch bar b or any bar before it."""
    end = int(base.ingest_ts.max()) + 12 * STEP
    _, rows = run_all(base, end)
    i = data.draw(st.integers(0, len(rows) - 1))
    b = rows[i]["bar_end"]
    poison = []
    for j in range(data.draw(st.integers(1, 10))):
        if data.draw(st.booleans()):  # from the future of b
            ts = b + data.draw(st.integers(0, 5 * STEP))
            ingest = ts + data.draw(st.integers(0, 9 * STEP))
        else:  # from before b, but seen too late for it
            ts = b - data.draw(st.integers(1, 5 * STEP))
            ingest = b + GRACE + data.draw(st.integers(1, 600_000 - (b + GRACE - ts)))
        poison.append(
            {
                "ts": ts,
                "ingest_ts": ingest,
                "score": data.draw(st.floats(-1, 1)),
                "polarity": 1,
                "weight": 5.0,
                "id": f"p{j}",
            }
        )
    mixed = pd.concat([base, pd.DataFrame(poison)]).sample(frac=1.0, random_state=data.draw(st.integers(0, 99)))
    _, poisoned = run_all(mixed, max(end, int(mixed.ingest_ts.max())))
    assert_rows_identical(poisoned[: i + 1], rows[: i + 1])


# -- live view, ring, config --------------------------------------------------------------
def test_latest_equals_direct_sums_over_committed_and_pending():
    df = make_ticks(600, seed=8, max_delay=50_000, weights=(0.5, 1.0, 2.0))
    state = SentimentState()
    state.add_ticks(batch_of(df))
    wm = int(df.ingest_ts.iloc[400])
    state.advance(wm)
    assert state.n_pending > 0
    now = wm + 17_000
    view = state.latest(now)
    ts, s, w = df.ts.to_numpy(), df.score.to_numpy(), df.weight.to_numpy()
    sel = ts < now
    for name, win in WINDOWS.items():
        ww = w[sel] * np.exp(-(now - ts[sel]) / (win * 1000.0))
        close(view[f"sent_ema_{name}"], np.sum(ww * s[sel]) / np.sum(ww), rtol=1e-11)
    start = now // STEP * STEP
    op = (ts >= start) & (ts < now)
    assert view["open_cnt"] == op.sum() and view["open_bar_end"] == start + STEP
    close(view["open_score"], np.sum(w[op] * s[op]) / np.sum(w[op]) if op.any() else np.nan)
    assert view["last_bar_end"] == state.last_bar_end == (wm - GRACE) // STEP * STEP


def test_bar_at_serves_the_ring_and_forgets_older_bars():
    df = make_ticks(400, seed=9)
    cfg = SentimentConfig(history_bars=64)
    state, rows = run_all(df, int(df.ts.max()) + STEP, cfg)
    assert len(rows) > 64
    for r in rows[-64:]:
        assert_rows_identical([state.bar_at(r["bar_end"])], [r])
    assert state.bar_at(rows[-65]["bar_end"]) is None
    assert state.bar_at(rows[-1]["bar_end"] + STEP) is None and state.bar_at(rows[-1]["bar_end"] + 1) is None


def test_columns_are_the_shared_feature_names():
    cols = SentimentConfig().columns
    assert cols[0] == "bar_end" and cols[-1] == "imputed"
    assert set(cols[1:-1]) == set(SENTIMENT_FEATURES + OPTIONAL_SENTIMENT_FEATURES)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"impute": "mean"}, "'impute'"),
        ({"agg_weights": {"1h": 1.0}}, "'agg_weights'"),
        ({"ema_names": ("5m",)}, "'ema_names'"),
        ({"history_bars": 10}, "'history_bars'"),
    ],
)
def test_config_rejects_bad_values_naming_the_parameter(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        SentimentConfig(**kwargs)


def test_tick_batch_rejects_out_of_range_rows():
    with pytest.raises(ValueError, match="score must be finite in \\[-1, 1\\]; row 1"):
        TickBatch(ts=[1, 2], ingest_ts=[1, 2], score=[0.0, 1.5], polarity=[0, 1], weight=[1, 1], id_hash=[1, 2])
    with pytest.raises(ValueError, match="weight"):
        TickBatch(ts=[1], ingest_ts=[1], score=[0.0], polarity=[0], weight=[-1.0], id_hash=[1])


def test_from_records_hashes_ids_with_the_decoders_hash():
    # the hash itself is checked against an independent reference in tests/dataflows/test_tick_decode.py
    b = TickBatch.from_records([{"ts": 1, "ingest_ts": 1, "score": 0, "polarity": 0, "id": "abc"}])
    assert b.id_hash.tolist() == [hash_id("abc")] and b.weight.tolist() == [1.0]


# -- boundedness and throughput -------------------------------------------------------------
def test_pending_cap_forces_bars_closed_and_hands_them_to_advance():
    df = make_ticks(5_000, seed=11, max_delay=GRACE)
    state = SentimentState(SentimentConfig(max_pending=1_000))
    for chunk in split(df, list(range(500, 5_000, 500))):  # watermark never moves
        state.add_ticks(batch_of(chunk))
        assert state.n_pending <= 1_000
    assert state.n_forced_closes > 0
    rows = state.advance(int(df.ingest_ts.max()) + STEP)
    assert np.all(np.diff([r["bar_end"] for r in rows]) == STEP)
    # ticks arrive in ts order, each ingested within grace: a forced close at bar B drains every tick with
    # ts < B and the ticks still to come have ts >= B, so every tick still lands in its own bar
    assert sum(r["sent_cnt"] for r in rows) == len(df) and state.n_pending == 0


def test_state_stays_bounded_and_report_throughput(capsys):
    """10 ticks/s, batches of 1000, advance after each; 1M ticks ≈ 28 h of one busy symbol."""
    rng = np.random.default_rng(12)
    state = SentimentState()
    n_batch, size = 1_000, 1_000
    sizes = {}
    start = time.perf_counter()
    t = T0
    for i in range(n_batch):
        ts = t + np.sort(rng.integers(0, 100_000, size)).astype(np.int64)
        ingest = ts + rng.integers(0, 5_000, size)
        ids = rng.integers(0, 2**62, size)
        ids[::50] = ids[1::50][: ids[::50].size]  # a few duplicates
        state.add_ticks(
            TickBatch(
                ts=ts,
                ingest_ts=ingest,
                score=rng.uniform(-1, 1, size),
                polarity=rng.integers(-1, 2, size),
                weight=np.ones(size),
                id_hash=ids,
            )
        )
        state.advance(int(ingest.max()))
        t += 100_000
        if i + 1 in (100, n_batch):
            sizes[i + 1] = len(pickle.dumps(state))
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(
            f"\n[sentiment throughput] {n_batch * size / elapsed:,.0f} ticks/s add_ticks+advance "
            f"(batches of {size}); pickled state {sizes[100]:,} B @100k ticks, {sizes[n_batch]:,} B @1M ticks"
        )
    assert state.n_duplicate > 0 and state.last_bar_end is not None
    assert sizes[n_batch] <= 1.1 * sizes[100]


def test_symbol_ticks_hand_the_engine_the_checked_batch_columns() -> None:
    """The flow passes SymbolTicks' columns to `add_columns` unchecked: both ways the decode
    step builds them (dict records, the columnar decoder) must give TickBatch's dtypes and values."""
    import orjson

    from dataflows.sentiment_state import TickBatch
    from dataflows.tick_batches import SymbolTicks, split_by_symbol
    from dataflows.tick_decode import decode_ticks

    t0 = 1_763_683_200_000
    recs = [
        {
            "symbol": "XRPUSDT",
            "ts": t0 + i,
            "ingest_ts": t0 + 100 + i,
            "score": 0.1 * i - 0.5,
            "polarity": 1,
            "provider": "p",
            "id": f"x{i}",
        }
        for i in range(10)
    ]
    a = TickBatch.from_records([{**r, "weight": 0.5} for r in recs])
    by_dicts = SymbolTicks.group_records([dict(r) for r in recs], {"p": 0.5})["XRPUSDT"]
    fast = decode_ticks([orjson.dumps(r) for r in recs], np.full(len(recs), -1, np.int64), now_ms=t0 + 1_000)
    assert fast.ok.all()
    by_columns = split_by_symbol([(fast.table, fast.id_hash, np.arange(len(recs)))], {"p": 0.5})["XRPUSDT"]
    for b in (by_dicts, by_columns):
        for name in ("ts", "ingest_ts", "score", "polarity", "weight", "id_hash"):
            assert getattr(a, name).dtype == getattr(b, name).dtype
            assert (getattr(a, name) == getattr(b, name)).all()


# -- silences: implied bars (issue 15) ------------------------------------------------------
def _one_tick(ts: int, score: float, tid: str) -> TickBatch:
    return TickBatch(ts=[ts], ingest_ts=[ts + 500], score=[score], polarity=[1], weight=[1.0], id_hash=[hash_id(tid)])


def test_two_ticks_decades_apart_close_a_bounded_number_of_bars():
    """2000-01-01 and 2025: ~13 million minutes in between, ~30 bars stored."""
    old, new = 946_684_800_000, T0
    state = SentimentState()
    state.add_ticks(_one_tick(old + 1_000, 0.4, "a"))
    first = state.advance(old + 10 * STEP)
    state.add_ticks(_one_tick(new + 1_000, -0.2, "b"))
    rows = first + state.advance(new + 3 * STEP)
    kept = state.empty_bars_kept
    assert kept == 30 and len(rows) <= 1 + kept + 1 + 2 + kept
    ends = [r["bar_end"] for r in rows]
    assert ends == sorted(ends) and ends[0] == old + STEP and new + STEP in ends
    # the tick after the silence: its bar and EMAs as if every minute in between had been closed
    (after,) = [r for r in rows if r["bar_end"] == new + STEP]
    assert after["sent_cnt"] == 1 and after["sent_score"] == -0.2
    for name, win in WINDOWS.items():
        w = np.exp(-(new + STEP - np.array([old + 1_000, new + 1_000])) / (win * 1000.0))
        close(after[f"sent_ema_{name}"], (0.4 * w[0] - 0.2 * w[1]) / w.sum(), rtol=1e-12)


@pytest.mark.parametrize("impute", ["ffill", "zero", "none"])
def test_implied_bars_are_the_stored_ones_a_full_materialisation_gives(impute):
    """Silences of 40-300 minutes: the stored bars are the pandas oracle's rows at their bar
    ends, the ring answers for implied bars with the oracle's row too."""
    rng = np.random.default_rng(21)
    n = 400
    gaps = np.where(rng.random(n) < 0.1, rng.integers(40, 300, n) * STEP, rng.exponential(20_000, n))
    ts = T0 + 1_234 + np.cumsum(gaps).astype(np.int64)
    score = rng.uniform(-1, 1, n)
    df = pd.DataFrame(
        {"ts": ts, "ingest_ts": ts, "score": score, "polarity": np.sign(score).astype(np.int8), "weight": 1.0}
    ).assign(id=[f"s{i}" for i in range(n)])
    cfg = SentimentConfig(impute=impute)
    state, rows = run_all(df, int(ts.max()) + 500 * STEP, cfg)
    got = pd.DataFrame(rows).set_index("bar_end")
    last = state.last_bar_end
    every = np.arange(got.index[0], last + 1, STEP)
    assert len(got) < len(every) - 1_000 and last - got.index[-1] > 400 * STEP  # most empty bars were implied
    want = bar_oracle(df, impute, every)
    columns = ("sent_cnt", "imputed", "sent_score", "sent_pos_ratio", "sent_d1", "sent_d5", "sent_vol_30")
    for c in columns:
        close(got[c], want.loc[got.index, c])
    # the ring answers for the last 256 bar ends, implied ones included, with the oracle's rows
    ring = pd.DataFrame([state.bar_at(b) for b in range(last - 255 * STEP, last + 1, STEP)]).set_index("bar_end")
    assert ring.index.tolist() == list(range(last - 255 * STEP, last + 1, STEP))
    for c in columns:
        close(ring[c], want.loc[ring.index, c])
    assert state.bar_at(last - 256 * STEP) is None


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 400), min_size=2, max_size=12),
    cuts=st.lists(st.integers(0, 60), max_size=8),
)
def test_silences_give_the_same_bars_however_the_bars_are_closed(gaps, cuts):
    """Closing after every tick (live) or once (replay), across silences longer than the
    30 stored empty bars: the same rows, bit for bit, and the same ring."""
    ts = T0 + 777 + np.cumsum(np.array(gaps) * STEP + 1_000)
    rng = np.random.default_rng(len(gaps))
    df = pd.DataFrame(
        {"ts": ts, "ingest_ts": ts + 300, "score": rng.uniform(-1, 1, ts.size), "polarity": 1, "weight": 1.0}
    ).assign(id=[f"g{i}" for i in range(ts.size)])
    end = int(ts.max()) + 200 * STEP
    live, live_rows = SentimentState(), []
    for chunk in split(df, cuts):
        live.add_ticks(batch_of(chunk))
        live_rows += live.advance(int(chunk.ingest_ts.max()))
    live_rows += live.advance(end)
    replay, replay_rows = run_all(df, end)
    assert_rows_identical(live_rows, replay_rows)
    for b in range(end // STEP * STEP - 300 * STEP, end, STEP):
        x, y = live.bar_at(b), replay.bar_at(b)
        assert (x is None) == (y is None) and (x is None or assert_rows_identical([x], [y]) is None)


def test_a_state_pickled_before_implied_bars_and_pending_room_resumes():
    df = make_ticks(300, seed=31)
    state = SentimentState()
    state.add_ticks(batch_of(df.iloc[:200]))
    state.advance(int(df.ingest_ts.iloc[150]))
    old = state.__getstate__()
    del old["_p_n"], old["_empty_run"]  # fields the previous version did not have
    resumed = SentimentState.__new__(SentimentState)
    resumed.__setstate__(pickle.loads(pickle.dumps(old)))
    for s in (state, resumed):
        s.add_ticks(batch_of(df.iloc[200:]))
    assert resumed.n_pending == state.n_pending > 0
    end = int(df.ingest_ts.max()) + 5 * STEP
    assert_rows_identical(resumed.advance(end), state.advance(end))
