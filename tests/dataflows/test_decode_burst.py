"""A live candle burst (HTTP: a thousand candle dicts and tick dicts in one batch) decodes as
columns — candles by `dataflows.candle_decode`, candle cuts by one sorted search — and gives
exactly what the record-by-record reference gives: the same ShardWork items, pair for pair
(SymbolTicks contents and dtypes, candle dicts and their types, cuts), the same rejected
rows with the same reasons, events and gate state (issue 21 part 1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import decode as decode_module
from dataflows.candle_decode import MAX_CANDLE_JSON, vouched_candles
from dataflows.decode import DecodeConfig, DecodeLogic, SymbolInput, _Batch
from dataflows.items import ShardWork
from dataflows.simulator import flat_candle
from dataflows.sources import RawBlock
from dataflows.tick_decode import FastTicks
from tickcast.records import INTERVAL_MS, MAX_TS_MS, decode_record

START = 1_763_683_200_000
NOW_S = 1_800_000_000.0  # the patched wall clock (s)


candle = flat_candle  # (symbol, close_time, price=100.0, **extra)


def tick(symbol: str, ts: int, ingest: int, score: float = 0.1, provider: str = "newsapi") -> dict[str, Any]:
    return {
        "symbol": symbol,
        "ts": ts,
        "score": score,
        "provider": provider,
        "ingest_ts": ingest,
        "id": f"{symbol}-{ts}",
    }


def reference_cuts(self: _Batch, fast: FastTicks | None) -> dict[str, list[int]]:
    """The per-symbol loop `_Batch.cuts` replaced: the reference it must agree with."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if fast is None or self.fast_pos is None or not any(rows.size for rows in self.fast_rows):
        return self.candle_cuts
    rows = np.concatenate(self.fast_rows)
    encoded = pc.dictionary_encode(fast.table.column("symbol").take(pa.array(rows))).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    positions = self.fast_pos[rows][order]
    sorted_codes = codes[order]
    out = dict(self.candle_cuts)
    for code, name in enumerate(encoded.dictionary.to_pylist()):
        if name in out:
            lo, hi = np.searchsorted(sorted_codes, [code, code + 1])
            before = np.searchsorted(positions[lo:hi], self.candle_pos[name])
            out[name] = [a + int(b) for a, b in zip(out[name], before, strict=True)]
    return out


def _typed(value: Any) -> Any:
    """A value with its type spelled out (1 == 1.0 == True must not pass for equal)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def _exact(out: list[Any]) -> list[Any]:
    """Every output item, in order, comparable with its types (ShardWork pairs in their order)."""
    shown: list[Any] = []
    for item in out:
        if not isinstance(item, ShardWork) or not isinstance(item.work, list):
            shown.append(_typed(item))
            continue
        pairs = []
        for symbol, inp in item.work:
            assert isinstance(inp, SymbolInput)
            ticks = inp.ticks
            if ticks is not None:
                arrays = [(a.dtype.str, a.tolist()) for a in (ticks.ts, ticks.ingest_ts, ticks.score)]
                arrays += [(a.dtype.str, a.tolist()) for a in (ticks.polarity, ticks.weight, ticks.id_hash)]
                table = None if ticks.table is None else (str(ticks.table.schema), ticks.table.to_pylist())
                shown_ticks: Any = (table, _typed(ticks.rows), arrays)
            else:
                shown_ticks = None
            pairs.append((symbol, shown_ticks, _typed(inp.candles), inp.cuts))
        shown.append((item.shard, pairs))
    return shown


def _both(config: DecodeConfig, batches: list[list[Any]], enable: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """(new, reference) outputs and gate states of the same activations on two fresh steps."""
    results = []
    for reference in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(decode_module.time, "time", lambda: NOW_S)
            if reference:  # candles one by one through decode_record, cuts by the old loop
                mp.setattr(decode_module, "vouched_candles", lambda *a, **k: ([], []))
                mp.setattr(decode_module._Batch, "cuts", reference_cuts)
            logic = DecodeLogic(config, None)
            outs = []
            for batch in batches:
                outs.append(_exact(logic.on_batch([batch])[0]))
            state = logic.state
            results.append((outs, dict(state.streak), sorted(state.disabled)))
    return results[0], results[1]


def _burst(n: int, close: int) -> list[tuple[str, dict[str, Any], int]]:
    records = [candle(f"S{i:04d}USDT", close, 100.0 + i) for i in range(n)]
    records += [tick(f"S{i:04d}USDT", close + 2_500, close + 2_001) for i in range(n)]
    return [("http", r, r["ingest_ts"]) for r in records]


def test_a_live_burst_decodes_as_the_reference_and_never_calls_decode_record(monkeypatch: pytest.MonkeyPatch) -> None:
    close = int(NOW_S * 1000) // 60_000 * 60_000 - 120_000
    config = DecodeConfig(wall_clock=True)
    batches = [_burst(300, close), _burst(300, close + 60_000)]
    new, reference = _both(config, batches)
    assert new == reference
    monkeypatch.setattr(decode_module.time, "time", lambda: NOW_S)
    monkeypatch.setattr(decode_module, "decode_record", lambda *a, **k: 1 / 0)
    out, _ = DecodeLogic(config, None).on_batch([_burst(300, close)])
    inputs = [inp for item in out if isinstance(item, ShardWork) for _, inp in item.work]
    assert sum(len(inp.candles) for inp in inputs) == 300 and all(inp.cuts == [0] for inp in inputs)


def _mixed(close: int) -> list[tuple[str, Any, int | None]]:
    """Ties in ingest_ts, candles among their symbols' ticks, several candles per symbol,
    ticks the per-record path takes (numpy values), controls, a provider disabled mid-batch,
    candles only decode_record can judge (an extra field), and every candle rule broken."""
    a, b, c = "AUSDT", "BUSDT", "CUSDT"
    slow_tick = tick(a, close - 50, close) | {"score": np.float64(0.3)}  # objects_as_json refuses it
    bad = "badprov"
    rows: list[tuple[str, Any, int | None]] = [
        ("http", tick(a, close - 100, close), close),
        ("http", candle(a, close), close),  # tie in ingest_ts with the ticks around it
        ("http", tick(a, close - 90, close), close),
        ("http", slow_tick, close),
        ("http", candle(a, close + 60_000), close + 60_100),
        ("http", tick(b, close - 80, close), close),
        ("http", candle(b, close, extra=1), close),  # accepted by decode_record only
        ("http", candle(b, close + 60_000), close + 60_100),
        ("http", orjson.dumps(tick(b, close - 70, close)), close),
        ("http", candle(c, close), None),
        ("sim", candle(c, close + 60_000), close + 60_100),
        ("http", {"_control": "trading", "command": "halt", "id": "h1", "at": close}, close),
    ]
    rows += [("http", tick(a, close - 60 + k, close, score=5.0, provider=bad), close) for k in range(3)]
    rows += [("http", tick(a, close - 40, close, provider=bad), close)]  # refused: disabled
    rows += [("http", candle(a, close + 120_000), close + 120_100)]
    rows += [("http", {"_control": "enable_provider", "provider": bad}, close)]
    rows += [("http", tick(a, close - 30, close, provider=bad), close)]
    broken: list[dict[str, Any]] = [
        candle(c, close) | {"interval": "2m"},
        candle(c, close) | {"interval": 1},
        candle(c, close) | {"open_time": close - 30_000},
        candle(c, close + 1) | {"open_time": close + 1 - 60_000},
        candle(c, close) | {"high": 1.0},
        candle(c, close) | {"low": 1_000.0},
        candle(c, close) | {"open": -1.0},
        candle(c, close) | {"volume": -1.0},
        candle(c, close) | {"volume": float("nan")},
        candle(c, close) | {"close": float("inf")},
        candle(c, close) | {"open": True},
        candle(c, close) | {"open": 2**70},
        candle(c, close) | {"open": "1"},
        candle(c, close) | {"symbol": "bad symbol"},
        candle(c, close) | {"symbol": None},
        candle(c, close) | {"ingest_ts": close - 120_000},
        candle(c, close) | {"ingest_ts": True},
        candle(c, close) | {"ingest_ts": float(close + 100)},
        candle(c, close) | {"ingest_ts": None},
        candle(c, close) | {"close_time": float(close), "open_time": float(close - 60_000)},
        candle(c, MAX_TS_MS + 60_000),
        {k: v for k, v in candle(c, close).items() if k != "volume"},
        candle(c, close) | {"_control": "trading"},
        candle(c, close) | {"score": 0.5},
        candle(c, close) | {"open": 100, "close": 100, "high": 101, "low": 99, "volume": 0},
    ]
    rows += [("http", rec, close + k) for k, rec in enumerate(broken)]
    rows += [("http", candle(c, close + 180_000), close + 10**10)]  # future against the wall clock
    return rows


@pytest.mark.parametrize(
    "config",
    [DecodeConfig(wall_clock=True, disable_streak=3), DecodeConfig(), DecodeConfig(max_record_bytes=300)],
)
def test_mixed_and_malformed_batches_decode_as_the_reference(config: DecodeConfig) -> None:
    close = int(NOW_S * 1000) // 60_000 * 60_000 - 600_000
    batch = _mixed(close)
    new, reference = _both(config, [batch, batch[::-1], batch[5:] + batch[:5]])
    assert new == reference


def test_raw_blocks_of_dicts_keep_their_keys() -> None:
    close = int(NOW_S * 1000) // 60_000 * 60_000 - 600_000
    values = [candle("AUSDT", close), candle("BUSDT", close), tick("AUSDT", close - 5, close), candle("CUSDT", close)]
    keys: list[bytes | None] = [b"AUSDT", b"XUSDT", None, None]
    block = RawBlock(["kafka:x"], values, np.full(4, close + 100, np.int64), keys=keys)
    new, reference = _both(DecodeConfig(), [block])  # type: ignore[list-item]
    assert new == reference
    assert "key_mismatch" in str(new)


def test_the_json_bound_holds_for_the_widest_candle() -> None:
    widest = {
        "symbol": "A" * 32,
        "interval": "12h",
        "open_time": MAX_TS_MS,
        "close_time": MAX_TS_MS,
        "open": -2.2250738585072014e-308,
        "high": -(2**53 - 1),
        "low": -1.2345678901234567e-300,
        "close": -1.2345678901234567e-300,
        "volume": -1.2345678901234567e-300,
        "ingest_ts": MAX_TS_MS,
    }
    assert len(orjson.dumps(widest)) <= MAX_CANDLE_JSON


# ---------------------------------------------------------------------------
# property: the columnar check vouches only for what decode_record accepts, as it returns it

ODD = st.sampled_from(
    [
        float("nan"),
        float("inf"),
        None,
        np.int64(3),
        np.float64(0.5),
        2**53,
        2**53 + 1,
        -(2**70),
        True,
        0,
        -1.0,
        1e300,
        0.5,
        "1m",
        "5m",
        "x",
        [],
        {},
        START,
        START + 0.5,
        float(START),
        START + 30_000,
    ]
)
CANDLE_FIELDS = st.sampled_from(
    ["symbol", "interval", "open_time", "close_time", "open", "high", "low", "close", "volume", "ingest_ts"]
)


@st.composite
def candle_dicts(draw: st.DrawFn) -> dict[str, Any]:
    step = INTERVAL_MS[draw(st.sampled_from(["1m", "5m", "1h"]))]
    close = START + step * draw(st.integers(-3, 3))
    rec = candle(draw(st.sampled_from(["AUSDT", "B.USD-T", "CUSDT"])), close, draw(st.sampled_from([1.0, 7, 2.5])))
    rec["interval"] = {v: k for k, v in INTERVAL_MS.items()}[step]
    rec["open_time"] = close - step
    for _ in range(draw(st.integers(0, 2))):
        rec[draw(CANDLE_FIELDS)] = draw(ODD)
    if draw(st.booleans()):
        rec.pop(draw(CANDLE_FIELDS))
    if draw(st.integers(0, 9)) == 0:
        rec["extra"] = 1
    return rec


RECORDS = st.one_of(
    candle_dicts(),
    st.builds(lambda s, k: tick(s, START - k, START), st.sampled_from(["AUSDT", "CUSDT"]), st.integers(0, 9)),
    st.builds(lambda s: orjson.dumps(tick(s, START - 7, START)), st.sampled_from(["AUSDT", "B.USD-T"])),
    st.just({"_control": "enable_provider", "provider": "newsapi"}),
    st.builds(lambda s: tick(s, START - 3, START, score=9.0), st.sampled_from(["AUSDT", "CUSDT"])),
)
HINTS = st.one_of(st.none(), st.sampled_from([START - 90_000, START, START + 100, START + 60_100]))
SOURCES = st.sampled_from(["http", "http", "sim", "file:x.parquet"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(st.tuples(SOURCES, RECORDS, HINTS), min_size=1, max_size=25),
    st.sampled_from([DecodeConfig(), DecodeConfig(wall_clock=True, disable_streak=2)]),
)
def test_any_batch_of_candles_and_ticks_decodes_as_the_reference(rows, config: DecodeConfig) -> None:  # noqa: ANN001
    new, reference = _both(config, [list(rows)])
    assert new == reference


def _plain(record: dict[str, Any]) -> bool:
    """Contract fields only, each a str, a float, or an int below 2**53 (not a bool)."""
    return record.keys() <= set(candle("X", START)) and all(
        v.__class__ in (str, float) or (v.__class__ is int and abs(v) < 2**53) for v in record.values()
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(candle_dicts(), HINTS), min_size=1, max_size=20), st.sampled_from([None, START + 30_000]))
def test_a_vouched_candle_is_what_decode_record_returns(rows, wall_ms: int | None) -> None:  # noqa: ANN001
    payloads, hints = [r for r, _ in rows], [h for _, h in rows]
    at, candles = vouched_candles(payloads, hints, None, wall_ms=wall_ms, max_future_ms=60_000, max_record_bytes=65_536)
    for i, got in zip(at, candles, strict=True):
        hint = hints[i]
        expected = decode_record(
            payloads[i],
            source="http",
            now_ms=hint if hint is not None else 0,
            default_ingest="now" if hint is not None else "event",
            wall_ms=wall_ms,
        )
        assert expected == ("candle", got) and _typed(expected[1]) == _typed(got)
    for i in sorted(set(range(len(payloads))) - set(at)):  # left out: decode_record refuses, or may take it
        if _plain(payloads[i]):
            expected = decode_record(
                payloads[i],
                source="http",
                now_ms=hints[i] if hints[i] is not None else 0,
                default_ingest="now" if hints[i] is not None else "event",
                wall_ms=wall_ms,
            )
            assert not isinstance(expected, tuple), (payloads[i], hints[i])  # plain candles are all vouched


def test_a_fault_of_the_candle_check_costs_its_speed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    close = int(NOW_S * 1000) // 60_000 * 60_000 - 600_000
    batch = _mixed(close)
    _, reference = _both(DecodeConfig(), [batch])
    monkeypatch.setattr(decode_module, "vouched_candles", lambda *a, **k: 1 / 0)
    faulty, _ = _both(DecodeConfig(), [batch])
    assert faulty == reference


def test_columns_mixing_ints_and_large_floats_are_vouched_as_decode_record_takes_them() -> None:
    payloads = [candle("AUSDT", START) | {"volume": 1e300}, candle("BUSDT", START) | {"volume": 5, "open": 2**53 + 2}]
    at, candles = vouched_candles(
        payloads, [None, None], None, wall_ms=None, max_future_ms=60_000, max_record_bytes=65_536
    )
    assert at == [0] and candles[0]["volume"] == 1e300  # the 2**53 + 2 int is decode_record's to judge
    assert decode_record(payloads[0], source="http", now_ms=0, default_ingest="event") == ("candle", candles[0])


# ---------------------------------------------------------------------------
# JSON text (file lines, Kafka messages): a plainly spelled candle takes the columnar check


def _spellings(rec: dict[str, Any]) -> list[bytes]:
    """The candle as a file or a producer may write it: compact (vouched for) and spellings
    only decode_record may judge (a space, an escape, a member named twice, Python's json)."""
    compact = orjson.dumps(rec)
    return [
        compact,
        compact.replace(b",", b", ", 1),
        compact.replace(b'"symbol"', b'"\\u0073ymbol"'),
        compact[:-1] + b',"symbol":"ZUSDT"}',
        compact[:-1] + b',"open":' + orjson.dumps(rec.get("open", 1.0)) + b"}",
        b'{"interval":"1m",' + compact[1:],
        compact + b" ",
        compact[:-2],
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(st.tuples(candle_dicts(), st.integers(0, 7), HINTS), min_size=1, max_size=25),
    st.sampled_from(["file:candles.jsonl", "kafka:candles", "sim"]),
    st.sampled_from([DecodeConfig(), DecodeConfig(wall_clock=True), DecodeConfig(max_record_bytes=250)]),
)
def test_candles_as_json_text_decode_as_the_reference(rows, source: str, config: DecodeConfig) -> None:  # noqa: ANN001
    texts = []
    for rec, how, hint in rows:
        try:
            spelled = _spellings(rec)[how]
        except orjson.JSONEncodeError:  # a value JSON has no spelling for (NaN is null, 2**70 too big)
            continue
        texts.append((source, spelled, hint))
    if not texts:
        return
    new, reference = _both(config, [texts])
    assert new == reference
    hints = np.array([-1 if h is None else h for _, _, h in texts], np.int64)
    block = RawBlock([source], [t for _, t, _ in texts], hints)
    new, reference = _both(config, [block])  # type: ignore[list-item]
    assert new == reference


def test_a_replay_of_the_simulators_candles_file_never_calls_decode_record(monkeypatch: pytest.MonkeyPatch) -> None:
    close = START + 600_000
    lines = [orjson.dumps(candle(f"S{i:03d}USDT", close + 60_000 * (i % 3), 100.0 + i)) for i in range(200)]
    ticks = [orjson.dumps(tick("S001USDT", close - 5, close))]
    block = RawBlock(["file:candles.jsonl"], lines + ticks, np.full(len(lines) + 1, -1, np.int64))
    new, reference = _both(DecodeConfig(), [block])  # type: ignore[list-item]
    assert new == reference
    monkeypatch.setattr(decode_module, "decode_record", lambda *a, **k: 1 / 0)
    out, _ = DecodeLogic(DecodeConfig(), None).on_batch([block])
    inputs = [inp for item in out if isinstance(item, ShardWork) for _, inp in item.work]
    assert sum(len(inp.candles) for inp in inputs) == 200
