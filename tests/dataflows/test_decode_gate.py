"""The decode step's provider gate gives the same outcome when clean ticks take the columnar
path and failing ones the per-record path: a per-record walk, in order, is the reference."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import decode as decode_module
from dataflows.decode import DecodeConfig, DecodeLogic, GateState, SymbolInput
from dataflows.items import ConsumerError, Events, Rows, ShardWork
from dataflows.sources import RawBlock
from dataflows.tick_decode import TICK_COLUMNS, TICK_SCHEMA, FastTicks
from tests.dataflows.test_tick_decode import HINTS, KEYS, clean_ticks, dirty_values

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
    inputs = [inp for item in out if isinstance(item, ShardWork) for _, inp in item.work]
    return [
        i
        for inp in inputs
        if isinstance(inp, SymbolInput) and inp.ticks is not None
        for i in (
            inp.ticks.table.column("id").to_pylist()
            if inp.ticks.table is not None
            else [r["id"] for r in inp.ticks.rows or []]
        )
    ]


def _rejected(out: list) -> list[dict]:
    return [r for item in out if isinstance(item, Rows) and item.table == "rejected_records" for r in item.rows]


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
    assert [data["kind"] for item in out if isinstance(item, Events) for _, data, _, _ in item.events] == [
        "provider_disabled"
    ]


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
        (c["symbol"], c["close_time"])
        for item in out
        if isinstance(item, ShardWork)
        for _, inp in item.work
        for c in inp.candles
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


# ---------------------------------------------------------------------------
# no payload or batch makes the step raise; the columnar and per-record paths agree (issue 15 item 5)


def _full(out: list) -> tuple[list, list, list, list]:
    """(accepted ticks as TICK_COLUMNS dicts per symbol, candles, rejected rows, events) of one on_batch."""
    ticks, candles = [], []
    for item in out:
        if not isinstance(item, ShardWork):
            continue
        for symbol, inp in item.work:
            if inp.ticks is not None:
                rows = inp.ticks.table.to_pylist() if inp.ticks.table is not None else inp.ticks.rows
                ticks.append((symbol, [{k: r[k] for k in TICK_COLUMNS} for r in rows]))
            candles.append((symbol, inp.candles))
    rejected = [(r["source"], r["reason"], r["payload"], r["provider"], r["received_ts"]) for r in _rejected(out)]
    events = [data for item in out if isinstance(item, Events) for _, data, _, _ in item.events]
    return sorted(ticks), sorted(candles, key=lambda c: c[0]), rejected, events


def _per_record_only(values, hints, **kw):  # noqa: ANN001, ANN003 - decode_ticks' signature
    ok = np.zeros(len(values), bool)
    return FastTicks(ok, TICK_SCHEMA.empty_table(), np.empty(0, np.int64))


MIXED = st.one_of(
    dirty_values(),
    clean_ticks().map(orjson.dumps),
    st.sampled_from([_candle(2), orjson.dumps({"_control": "enable_provider", "provider": "p"})]),
    st.builds(lambda c: orjson.dumps({**orjson.loads(_candle(3)), "interval": c}), st.sampled_from([{}, [], 1, None])),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(st.tuples(MIXED, HINTS, KEYS), min_size=1, max_size=30),
    st.sampled_from(
        [DecodeConfig(), DecodeConfig(wall_clock=True, disable_streak=2), DecodeConfig(max_record_bytes=2_000)]
    ),
)
def test_any_batch_decodes_without_raising_and_both_paths_agree(rows, config: DecodeConfig) -> None:
    values, hints, keys = (list(c) for c in zip(*rows))
    block = RawBlock(["kafka:t"], values, np.array(hints, np.int64), keys=keys)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_module.time, "time", lambda: 1_800_000_000.0)  # received_ts of refusals
        fast_out, _ = DecodeLogic(config, None).on_batch([block])
        mp.setattr(decode_module, "decode_ticks", _per_record_only)
        slow_out, _ = DecodeLogic(config, None).on_batch([block])
    assert _full(fast_out) == _full(slow_out)
    accepted = sum(len(t) for _, t in _full(fast_out)[0]) + sum(len(c) for _, c in _full(fast_out)[1])
    controls = sum(
        orjson.loads(v).get("_control") == "enable_provider" and isinstance(orjson.loads(v).get("provider"), str)
        for v in values
        if _is_json_object(v)
    )
    assert accepted + len(_rejected(fast_out)) + controls >= len(values)  # every record accounted for
    assert not any(r["reason"].startswith("decoder_error") for r in _rejected(fast_out))


def _is_json_object(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


def test_interval_object_candle_is_a_rejected_row_not_a_crash() -> None:
    bad = orjson.dumps({**orjson.loads(_candle(2)), "interval": {}})
    out, _ = DecodeLogic(DecodeConfig(), None).on_batch([[("kafka:c", _candle(1), None), ("kafka:c", bad, None)]])
    ids, candles, reasons = _summary(out)
    assert candles == [("XRPUSDT", START + 60_000)]
    assert reasons == [
        "unknown interval an object: 'interval' must be one of 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d"
    ]


def test_keys_reach_both_paths_and_a_mismatch_is_refused() -> None:
    ticks = [_tick("p", i) for i in range(4)]
    values = [*ticks, _candle(1), _candle(2)]
    keys = [b"XRPUSDT", b"ETHUSDT", None, b"XRPUSDT", b"BTCUSDT", b"XRPUSDT"]
    hints = np.array([START + i + 5 for i in range(4)] + [START + 60_100, START + 120_100], np.int64)
    block = RawBlock(["kafka:ticks", "kafka:candles"], values, hints, np.array([0, 0, 0, 0, 1, 1]), keys)
    ids, candles, reasons = _summary(DecodeLogic(DecodeConfig(), None).on_batch([block])[0])
    assert ids == ["p-0", "p-2", "p-3"] and candles == [("XRPUSDT", START + 120_000)]
    assert [r.split(":")[0] for r in reasons] == ["key_mismatch", "key_mismatch"]
    assert "b'ETHUSDT'" in reasons[0] and "b'BTCUSDT'" in reasons[1]
    # several blocks of one activation (and a consumer error ahead of them) keep their keys
    error = ConsumerError("ticks", 0, 7, "broker went away")
    joined = _summary(DecodeLogic(DecodeConfig(), None).on_batch([error, RawBlock.concat([block])])[0])
    assert joined[:2] == (ids, candles) and joined[2][1:] == reasons and "broker went away" in joined[2][0]
    split = _summary(DecodeLogic(DecodeConfig(), None).on_batch([block[:3], RawBlock.concat([block])])[0])
    assert split[2].count(reasons[0]) == 1  # a list of records has no keys; the block joined to it keeps its own


def test_a_decoder_fault_costs_one_record_not_the_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    real = decode_module.decode_record

    def flaky(payload, **kw):  # noqa: ANN001, ANN003
        if b"p-1" in payload:
            raise RuntimeError("boom")
        return real(payload, **kw)

    monkeypatch.setattr(decode_module, "decode_record", flaky)
    monkeypatch.setattr(decode_module, "decode_ticks", lambda *a, **k: 1 / 0)  # the columnar path fails too
    batch = [("kafka:t", _tick("p", i), START + i + 5) for i in range(3)]
    ids, _, reasons = _summary(DecodeLogic(DecodeConfig(), None).on_batch([batch])[0])
    assert ids == ["p-0", "p-2"] and reasons == ["decoder_error: RuntimeError: boom"]


def test_the_wall_clock_rule_spares_the_simulator_clock() -> None:
    ahead = START + 3_600_000 * 24 * 365 * 5  # the simulator at TICKCAST_SIM_SPEED > 1 runs ahead of the wall
    record = {"symbol": "XRPUSDT", "ts": ahead, "score": 0.1, "provider": "p", "id": "s", "ingest_ts": ahead}
    gate = DecodeLogic(DecodeConfig(wall_clock=True), None)
    ids, _, reasons = _summary(gate.on_batch([[("sim", record, None), ("kafka:t", orjson.dumps(record), None)]])[0])
    assert ids == ["s"] and len(reasons) == 1 and reasons[0].startswith("future: ingest_ts=")
    replay = DecodeLogic(DecodeConfig(wall_clock=False), None)  # replays: the record's own ingest_ts rules
    assert _summary(replay.on_batch([[("kafka:t", orjson.dumps(record), None)]])[0])[0] == ["s"]


def test_only_well_formed_provider_names_build_a_streak() -> None:
    """Junk provider names are refused like any bad tick, but keep no streak (state and metric
    labels would grow with every new name)."""
    junk = [
        ("kafka:t", orjson.dumps({"symbol": "XRPUSDT", "ts": START, "score": 9, "provider": f"bad name {i}"}), None)
        for i in range(50)
    ]
    gate = DecodeLogic(DecodeConfig(disable_streak=1), None)
    _, _, reasons = _summary(gate.on_batch([junk])[0])
    assert len(reasons) == 50 and all("'score' must be in [-1, 1]" in r for r in reasons)
    assert not any(name.startswith("bad name") for name in gate.state.streak) and gate.state.disabled == set()
    gate.on_batch([[("kafka:t", _tick("good", 1, 9.0), None)]])
    assert gate.state.disabled == {"good"}


# ---------------------------------------------------------------------------
# dict records (HTTP, simulator, Parquet rows) take the columnar path too (issue 21 part 1)


def _as_dict(value: bytes) -> object:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")  # not JSON: a str payload, the per-record path's


ODD = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), None, np.int64(3), np.float64(0.5), 2**70, True, 1.0, "x", [], {}]
)
FIELDS = st.sampled_from(["polarity", "ingest_ts", "id", "meta", "score", "ts", "symbol", "provider", "extra"])
DICTS = st.one_of(
    MIXED.map(_as_dict),
    st.builds(lambda t, f, v: {**t, f: v}, clean_ticks(), FIELDS, ODD),  # a value JSON spells differently, or not
    st.builds(lambda t, v: {**t, "meta": {"a": v}}, clean_ticks(), ODD),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(st.tuples(DICTS, HINTS, st.sampled_from(["http", "sim", "file:x.parquet"])), min_size=1, max_size=30),
    st.sampled_from([DecodeConfig(), DecodeConfig(wall_clock=True, disable_streak=2)]),
)
def test_dict_records_take_the_columnar_path_and_agree_with_the_per_record_path(rows, config: DecodeConfig) -> None:
    batch = [(source, record, None if hint < 0 else hint) for record, hint, source in rows]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_module.time, "time", lambda: 1_800_000_000.0)
        fast_out, _ = DecodeLogic(config, None).on_batch([batch])
        mp.setattr(decode_module, "decode_ticks", _per_record_only)
        slow_out, _ = DecodeLogic(config, None).on_batch([batch])
    assert _full(fast_out) == _full(slow_out)
    assert not any(r["reason"].startswith("decoder_error") for r in _rejected(fast_out))


def test_clean_dict_ticks_never_call_decode_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of clean dicts (one per symbol, as HTTP sends them) is decoded column-wise."""
    records = [("http", orjson.loads(_tick("p", i)) | {"symbol": f"S{i}USDT"}, START + i + 5) for i in range(200)]
    monkeypatch.setattr(decode_module, "decode_record", lambda *a, **k: 1 / 0)
    ids, _, reasons = _summary(DecodeLogic(DecodeConfig(wall_clock=True), None).on_batch([records])[0])
    assert sorted(ids) == sorted(f"p-{i}" for i in range(200)) and reasons == []
