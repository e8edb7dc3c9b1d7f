"""The decode step's provider gate gives the same outcome when clean ticks take the columnar
path and failing ones the per-record path: a per-record walk, in order, is the reference."""

from __future__ import annotations

import orjson

from dataflows.decode import DecodeConfig, DecodeLogic, GateState, SymbolInput

START = 1_763_683_200_000


def _tick(provider: str, i: int, score: float = 0.1) -> bytes:
    return orjson.dumps({"symbol": "XRPUSDT", "ts": START + i, "score": score, "provider": provider,
                         "id": f"{provider}-{i}", "ingest_ts": START + i + 5})


def _accepted_ids(out: list) -> list[str]:
    inputs = [item[2] for item in out if item[0] == "sym"]
    return [i for inp in inputs if isinstance(inp, SymbolInput) and inp.ticks is not None
            for i in inp.ticks.table.column("id").to_pylist()]


def _rejected(out: list) -> list[dict]:
    return [r for item in out if item[0] == "rows" and item[1] == "rejected_records" for r in item[2]]


def test_a_streak_disables_in_order_between_fast_runs() -> None:
    # p: good, bad, bad, good (streak back to 0), bad x3 (disabled here), good (refused); q always good
    plan = [("p", 0.1), ("q", 0.1), ("p", 5.0), ("p", 5.0), ("p", 0.2), ("q", 0.3), ("p", 5.0), ("p", 5.0),
            ("p", 5.0), ("q", 0.4), ("p", 0.5)]
    batch = [("kafka:t", _tick(p, i, s), START + i + 5) for i, (p, s) in enumerate(plan)]
    gate = DecodeLogic(DecodeConfig(disable_streak=3), None)
    out, _ = gate.on_batch([batch])
    assert _accepted_ids(out) == ["p-0", "q-1", "p-4", "q-5", "q-9"]  # one symbol: arrival order
    reasons = [r["reason"] for r in _rejected(out)]
    assert sum("score" in r for r in reasons) == 5
    assert reasons[-1] == "provider 'p' is disabled" and gate.state.disabled == {"p"}
    assert [item[2]["kind"] for item in out if item[0] == "event"] == ["provider_disabled"]


def test_two_failures_then_a_good_tick_do_not_disable() -> None:
    plan = [("p", 5.0), ("p", 5.0), ("p", 0.1), ("p", 5.0), ("p", 5.0), ("p", 0.2)]
    batch = [("kafka:t", _tick(p, i, s), None) for i, (p, s) in enumerate(plan)]
    gate = DecodeLogic(DecodeConfig(disable_streak=3), GateState())
    out, _ = gate.on_batch([batch])
    assert _accepted_ids(out) == ["p-2", "p-5"] and not gate.state.disabled
    assert gate.state.streak["p"] == 0
