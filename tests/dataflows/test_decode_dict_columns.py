"""Dict records (HTTP, the simulator) read as columns straight from the dicts (issue 21 part 1:
`tick_decode.decode_objects` for ticks, the faster `candle_decode.vouched_candles`, the one-tick-
per-symbol grouping of `tick_batches.split_by_symbol`) give exactly what the per-record path
gives: every tick, candle, cut, rejected row (same reason, payload, order) and event, with
the same values and types — on batches of dicts whose fields are malformed in every way
JSON and Python allow (wrong types, NaN, infinities, bools, numpy scalars, huge ints, control
characters, lone surrogates, missing and extra members)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import decode as decode_module
from dataflows import tick_decode
from dataflows.decode import DecodeConfig, DecodeLogic
from dataflows.items import Events, Rows, ShardWork, TableRow
from dataflows.simulator import flat_candle
from dataflows.tick_decode import TICK_COLUMNS, TICK_SCHEMA, FastTicks
from tests.dataflows.test_decode_burst import _typed  # values with their types spelled out
from tickcast.records import MAX_ID_CHARS

START = 1_763_683_200_000
NOW_S = 1_800_000_000.0


def _shown(out: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """(per shard, its pairs by symbol: tick rows, column dtypes and values, candles, cuts;
    every other item in order: rejected rows, events; shard order) of one on_batch."""
    work, others, shards = [], [], []
    for item in out:
        if not isinstance(item, ShardWork):
            others.append(_typed(item.events if isinstance(item, Events) else item))
            continue
        shards.append(item.shard)
        pairs = []
        for symbol, inp in item.work:
            ticks = inp.ticks
            shown_ticks: Any = None
            if ticks is not None:
                rows = ticks.table.to_pylist() if ticks.table is not None else ticks.rows
                columns = (ticks.ts, ticks.ingest_ts, ticks.score, ticks.polarity, ticks.weight, ticks.id_hash)
                shown_ticks = (
                    _typed([{k: r[k] for k in TICK_COLUMNS} for r in rows]),
                    [(a.dtype.str, a.shape, a.tolist()) for a in columns],
                )
            pairs.append((symbol, shown_ticks, _typed(inp.candles), inp.cuts))
        work.append((item.shard, sorted(pairs, key=lambda p: p[0])))  # the two paths may list symbols apart
    return sorted(work, key=lambda w: w[0]), others, sorted(shards)


def _per_record_only(values, hints, **kw):  # noqa: ANN001, ANN003 - decode_ticks' signature
    return FastTicks(np.zeros(len(values), bool), TICK_SCHEMA.empty_table(), np.empty(0, np.int64))


def _both(config: DecodeConfig, batches: list[list[Any]]) -> tuple[Any, Any]:
    """(columnar, per-record) outputs and gate states of the same activations on two fresh steps."""
    results = []
    for reference in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(decode_module.time, "time", lambda: NOW_S)
            if reference:  # every record through decode_record, one by one
                mp.setattr(decode_module, "decode_ticks", _per_record_only)
                mp.setattr(decode_module, "vouched_candles", lambda *a, **k: ([], []))
            logic = DecodeLogic(config, None)
            outs = [_shown(logic.on_batch([batch])[0]) for batch in batches]
            streak = {p: n for p, n in logic.state.streak.items() if n}  # 0 and absent: the same (the fast runs
            results.append((outs, streak, sorted(logic.state.disabled)))  # only reset streaks that are not 0)
    return results[0], results[1]


def tick(symbol: str, k: int, **extra: Any) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "ts": START - 5_000 + k,
        "score": 0.25,
        "provider": "newsapi",
        "ingest_ts": START + k,
        "id": f"{symbol}-{k}",
        **extra,
    }


ODD = st.sampled_from(
    [
        None,
        float("nan"),
        float("inf"),
        -float("inf"),
        True,
        False,
        0,
        -1,
        1,
        2,
        0.0,
        -0.0,
        1.0,
        0.5,
        -1.0,
        1.5,
        2**53,
        2**53 + 1,
        2**62,
        -(2**63),
        2**64,
        -(2**70),
        1e300,
        np.int64(1),
        np.float64(0.5),
        START,
        START + 0.0,
        START + 0.5,
        START + 10**9,
        "",
        "x",
        "AUSDT",
        "bad symbol",
        "a\x00b",
        "a\x7fb",
        "a\nb",
        "\ud800",
        "é" * 3,
        "y" * (MAX_ID_CHARS + 1),
        "y" * MAX_ID_CHARS,
        [],
        {},
        {"a": 1},
        '{"a": 1}',
        "1m",
        "5m",
    ]
)
TICK_FIELDS = st.sampled_from(["symbol", "ts", "score", "provider", "ingest_ts", "id", "polarity", "meta", "extra"])
CANDLE_KEYS = st.sampled_from(
    ["symbol", "interval", "open_time", "close_time", "open", "high", "low", "close", "volume", "ingest_ts", "extra"]
)
SYMBOLS = st.sampled_from(["AUSDT", "BUSDT", "C.USD-T", "DUSDT"])


@st.composite
def tick_dicts(draw: st.DrawFn) -> dict[str, Any]:
    rec = tick(draw(SYMBOLS), draw(st.integers(0, 50)))
    if draw(st.booleans()):
        rec["polarity"] = draw(st.sampled_from([-1, 0, 1]))
    for _ in range(draw(st.integers(0, 2))):
        rec[draw(TICK_FIELDS)] = draw(ODD)
    if draw(st.integers(0, 4)) == 0:
        rec.pop(draw(TICK_FIELDS), None)
    return rec


@st.composite
def candle_dicts(draw: st.DrawFn) -> dict[str, Any]:
    rec = flat_candle(draw(SYMBOLS), START + 60_000 * draw(st.integers(-2, 2)), draw(st.sampled_from([1.0, 7, 2.5])))
    for _ in range(draw(st.integers(0, 2))):
        rec[draw(CANDLE_KEYS)] = draw(ODD)
    if draw(st.integers(0, 4)) == 0:
        rec.pop(draw(CANDLE_KEYS), None)
    return rec


RECORDS = st.one_of(
    tick_dicts(),
    tick_dicts(),
    candle_dicts(),
    st.just({"_control": "enable_provider", "provider": "newsapi"}),
    st.sampled_from([None, b"", "{}", b'{"score": 1}', 3]),
)
HINTS = st.one_of(st.none(), st.sampled_from([START - 90_000, START, START + 100, START + 10**9]))
SOURCES = st.sampled_from(["http", "http", "http", "sim"])
CONFIGS = st.sampled_from(
    [
        DecodeConfig(),
        DecodeConfig(wall_clock=True, disable_streak=2, pos_threshold=0.3),
        DecodeConfig(max_record_bytes=500, trust={"newsapi": 0.5}),
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(st.tuples(SOURCES, RECORDS, HINTS), min_size=1, max_size=30), min_size=1, max_size=2), CONFIGS)
def test_dict_batches_decode_as_the_per_record_path(batches, config: DecodeConfig) -> None:  # noqa: ANN001
    columnar, reference = _both(config, [list(b) for b in batches])
    assert columnar == reference


def _burst(n: int, close: int, shuffle: bool = False) -> list[tuple[str, Any, int]]:
    records: list[dict[str, Any]] = [flat_candle(f"S{i:04d}USDT", close, 100.0 + i) for i in range(n)]
    records += [tick(f"S{i:04d}USDT", i) for i in range(n)]
    if shuffle:  # ticks before candles, and two ticks of one symbol
        records = records[n:] + records[:n] + [tick("S0001USDT", 7)]
    return [("http", r, r["ingest_ts"]) for r in records]


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_burst_decodes_as_the_per_record_path_without_json(shuffle: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live burst's dict ticks never pass through JSON (nor decode_record), and give what
    decode_record gives, candles, cuts and all."""
    batches = [_burst(200, START, shuffle), _burst(200, START + 60_000, shuffle)]
    columnar, reference = _both(DecodeConfig(), batches)
    assert columnar == reference
    monkeypatch.setattr(tick_decode, "objects_as_json", lambda *a, **k: 1 / 0)
    monkeypatch.setattr(decode_module, "decode_record", lambda *a, **k: 1 / 0)
    monkeypatch.setattr(decode_module.time, "time", lambda: NOW_S)
    out, _ = DecodeLogic(DecodeConfig(), None).on_batch([_burst(200, START, shuffle)])
    assert not [item for item in out if not isinstance(item, ShardWork)]  # no decoder_error row
    inputs = [inp for item in out if isinstance(item, ShardWork) for _, inp in item.work]
    assert sum(len(inp.ticks) for inp in inputs) == 200 + shuffle
    assert sum(len(inp.candles) for inp in inputs) == 200


def _rows(item: Any) -> list[dict[str, Any]]:
    """The rejected_records rows of one decode output item."""
    if isinstance(item, TableRow) and item.table == "rejected_records":
        return [item.row]
    if isinstance(item, Rows) and item.table == "rejected_records" and isinstance(item.rows, list):
        return item.rows
    return []


def test_a_lone_surrogate_in_a_dict_burst_is_rejected_and_stops_nothing() -> None:
    """An id with a lone surrogate used to be accepted, and hashing it raised out of the decode
    step (a stopped flow); in a provider it made a rejected row no store could insert."""
    burst = _burst(50, START)
    odd = [
        tick("S0001USDT", 1, id="a\ud800b"),
        tick("S0002USDT", 2, provider="x\udfff"),
        tick("S0003USDT", 3, meta={"k": "\ud800"}),
        {**flat_candle("S0004USDT", START, 1.0), "note": "\udc00"},
    ]
    batch = burst + [("http", r, r["ingest_ts"]) for r in odd]
    columnar, reference = _both(DecodeConfig(), [batch])
    assert columnar == reference
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_module.time, "time", lambda: NOW_S)
        out, _ = DecodeLogic(DecodeConfig(), None).on_batch([batch])
    rows = [row for item in out if not isinstance(item, ShardWork) for row in _rows(item)]
    refused = [r for r in rows if "lone surrogates" in str(r.get("reason", ""))]
    assert len(refused) == 4
    assert all(r["provider"].isascii() and r["payload"].isascii() for r in refused)  # a store can hold them
    inputs = [inp for item in out if isinstance(item, ShardWork) for _, inp in item.work]
    assert sum(len(inp.ticks) for inp in inputs) == 50 and sum(len(inp.candles) for inp in inputs) == 50
