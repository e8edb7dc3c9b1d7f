"""The decode step's provider gate gives the same outcome when clean ticks take the columnar
path and failing ones the per-record path: a per-record walk, in order, is the reference."""

from __future__ import annotations

import numpy as np
import orjson

from dataflows.decode import DecodeConfig, DecodeLogic, GateState, SymbolInput
from dataflows.sources import RawBlock

START = 1_763_683_200_000


def _tick(provider: str, i: int, score: float = 0.1) -> bytes:
    return orjson.dumps(
        {
            "symbol": "XRPUSDT",
            "ts": START + i,
            "score": score,
            "provider": provider,
            "id": f"{provider}-{i}",
            "ingest_ts": START + i + 5,
        }
    )


def _accepted_ids(out: list) -> list[str]:
    inputs = [inp for item in out if item[0] == "shard" for _, inp in item[2]]
    return [
        i
        for inp in inputs
        if isinstance(inp, SymbolInput) and inp.ticks is not None
        for i in inp.ticks.table.column("id").to_pylist()
    ]


def _rejected(out: list) -> list[dict]:
    return [r for item in out if item[0] == "rows" and item[1] == "rejected_records" for r in item[2]]


def test_a_streak_disables_in_order_between_fast_runs() -> None:
    # p: good, bad, bad, good (streak back to 0), bad x3 (disabled here), good (refused); q always good
    plan = [
        ("p", 0.1),
        ("q", 0.1),
        ("p", 5.0),
        ("p", 5.0),
        ("p", 0.2),
        ("q", 0.3),
        ("p", 5.0),
        ("p", 5.0),
        ("p", 5.0),
        ("q", 0.4),
        ("p", 0.5),
    ]
    batch = [("kafka:t", _tick(p, i, s), START + i + 5) for i, (p, s) in enumerate(plan)]
    gate = DecodeLogic(DecodeConfig(disable_streak=3), None)
    out, _ = gate.on_batch([batch])
    assert _accepted_ids(out) == ["p-0", "q-1", "p-4", "q-5", "q-9"]  # one symbol: arrival order
    reasons = [r["reason"] for r in _rejected(out)]
    assert sum("score" in r for r in reasons) == 5
    assert reasons[-1] == "provider 'p' is disabled" and gate.state.disabled == {"p"}
    assert [data["kind"] for item in out if item[0] == "events" for _, data, _, _ in item[1]] == ["provider_disabled"]


def test_two_failures_then_a_good_tick_do_not_disable() -> None:
    plan = [("p", 5.0), ("p", 5.0), ("p", 0.1), ("p", 5.0), ("p", 5.0), ("p", 0.2)]
    batch = [("kafka:t", _tick(p, i, s), None) for i, (p, s) in enumerate(plan)]
    gate = DecodeLogic(DecodeConfig(disable_streak=3), GateState())
    out, _ = gate.on_batch([batch])
    assert _accepted_ids(out) == ["p-2", "p-5"] and not gate.state.disabled
    assert gate.state.streak["p"] == 0


def _candle(i: int) -> bytes:
    return orjson.dumps(
        {
            "symbol": "XRPUSDT",
            "interval": "1m",
            "open_time": START - 60_000 + 60_000 * i,
            "close_time": START + 60_000 * i,
            "open": 1.0,
            "high": 1.2,
            "low": 0.9,
            "close": 1.1,
            "volume": 3.0,
        }
    )


def _summary(out: list) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    candles = [
        (c["symbol"], c["close_time"]) for item in out if item[0] == "shard" for _, inp in item[2] for c in inp.candles
    ]
    return _accepted_ids(out), candles, [r["reason"] for r in _rejected(out)]


def test_raw_blocks_decode_as_their_lists_of_records() -> None:
    """The Kafka source's columnar batches (two TPs merged, a bad tick, a timeless message) give
    what the same records as tuples give, also when one activation brings several blocks."""
    ticks = [_tick("p", i, 5.0 if i == 3 else 0.1) for i in range(8)]
    hints = np.array([START + i + 5 if i != 6 else -1 for i in range(8)], np.int64)
    first = RawBlock(
        ["kafka:ticks", "kafka:candles"],
        [*ticks[:4], _candle(1)],
        np.array([*hints[:4], START + 60_100]),
        np.array([0, 0, 0, 0, 1]),
    )
    second = RawBlock(["kafka:ticks"], ticks[4:], hints[4:])
    from_blocks, _ = DecodeLogic(DecodeConfig(), None).on_batch([first, second])
    from_lists, _ = DecodeLogic(DecodeConfig(), None).on_batch([list(first), list(second)])
    ids, candles, reasons = _summary(from_blocks)
    assert (ids, candles, reasons) == _summary(from_lists)
    assert ids == [f"p-{i}" for i in range(8) if i != 3] and candles == [("XRPUSDT", START + 60_000)]
    assert len(reasons) == 1 and "score" in reasons[0]
