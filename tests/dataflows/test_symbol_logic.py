"""The shard step (dataflows/symbol_logic.py). Live, an activation hands over what the
predictions wait for and leaves the side work (stored ticks and bars, live sentiment
events, refusals) to its next activation: that work must be the same work, done once,
never lost to a restart in between, and absent from the activation that made the features."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.decode import DecodeConfig, DecodeLogic
from dataflows.items import Events, ModelInputs, Rows, ShardWork
from dataflows.outputs import Pieces
from dataflows.signals import FlowOptions, symbol_config
from dataflows.simulator import SimConfig, generate_labeled
from dataflows.symbol_logic import ShardLogic, SymbolConfig
from tickcast.settings import load_settings
from tickcast.store import ColumnBlock

START = 1_763_683_200_000


def live_config(**changes: Any) -> SymbolConfig:
    return dataclasses.replace(symbol_config(load_settings(), FlowOptions(live=True)), **changes)


def decoded_chunks(size: int = 97, **sim: Any) -> list[list[tuple[str, list[Any]]]]:
    """The simulator's records through the decode step, `size` at a time: per chunk, the
    (shard, [(symbol, SymbolInput), ...]) items that step hands the shard step."""
    cfg = SimConfig(**{"symbols": 6, "hours": 1.0, "seed": 3, "start_ms": START, **sim})
    records = [r for r, _ in generate_labeled(cfg)]
    decode = DecodeLogic(DecodeConfig(recovery=False), None)
    chunks = []
    for i in range(0, len(records), size):
        out, _ = decode.on_batch([[("sim", r, r["ingest_ts"]) for r in records[i : i + size]]])
        chunks.append([(item.shard, item.work) for item in out if isinstance(item, ShardWork)])
    return chunks


def _rows(piece: Any) -> list[dict[str, Any]]:
    if isinstance(piece, Pieces):
        return [row for p in piece for row in _rows(p)]
    if isinstance(piece, ColumnBlock):
        return ColumnBlock.to_arrow([piece]).to_pylist()
    if isinstance(piece, pa.Table):
        return piece.to_pylist()
    return list(piece)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    # NaN != NaN: compare it as a marker; drop the wall-clock part of a rejection
    return tuple(
        sorted(
            (k, "NaN" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items() if k != "received_ts"
        )
    )


class Collected:
    def __init__(self) -> None:
        self.tables: dict[str, Counter[tuple[Any, ...]]] = {}
        self.events: list[tuple[Any, ...]] = []
        self.model: list[tuple[str, Any]] = []
        self.model_known: list[tuple[Any, ...]] = []  # (tag, symbol, close_time, known)
        self.had_ticks = False

    def add(self, items: list[tuple[Any, ...]]) -> None:
        for item in items:
            if isinstance(item, Rows):
                self.tables.setdefault(item.table, Counter()).update(_key(r) for r in _rows(item.rows))
            elif isinstance(item, Events):
                self.events += [(stream, _key(data), symbol, ts) for stream, data, symbol, ts in item.events]
            elif isinstance(item, ModelInputs):
                self.model += [(type(m).__name__, _key(m.row)) for m in item.items]


def _due(logic: ShardLogic) -> bool:
    at = logic.notify_at()
    return at is not None and at <= datetime.now(UTC)


def run(config: SymbolConfig, chunks: list[list[tuple[str, list[Any]]]]) -> tuple[Collected, list[Collected]]:
    """Everything the shards emit, and what each on_batch call emitted."""
    shards: dict[str, ShardLogic] = {}
    everything, per_batch = Collected(), []
    for chunk in chunks:
        for shard, pairs in chunk:
            logic = shards.setdefault(shard, ShardLogic(config, None))
            items, _ = logic.on_batch([pairs])
            batch = Collected()
            batch.had_ticks = any(inputs.ticks is not None for _, inputs in pairs)
            batch.add(items)
            per_batch.append(batch)
            everything.add(items)
        for logic in shards.values():
            if _due(logic):
                everything.add(logic.on_notify()[0])
    for logic in shards.values():
        everything.add(logic.on_eof()[0])
    return everything, per_batch


@pytest.fixture(scope="module")
def chunks() -> list[list[tuple[str, list[Any]]]]:
    return decoded_chunks(duplicate_rate=0.05, late_rate=0.03)


def test_deferred_side_work_is_the_same_work_done_once(chunks: list) -> None:
    deferred, _ = run(live_config(defer_side_work=True), chunks)
    at_once, _ = run(live_config(defer_side_work=False), chunks)
    assert (
        deferred.tables.keys()
        == at_once.tables.keys()
        >= {"sentiment_ticks", "sentiment_bars", "candles", "features", "labels", "rejected_records"}
    )
    for table in at_once.tables:
        assert deferred.tables[table] == at_once.tables[table], table
    refusals = [dict(k)["reason"] for k in at_once.tables["rejected_records"]]
    assert any(r.startswith("duplicate tick id") for r in refusals) and any(r.startswith("late tick") for r in refusals)
    assert deferred.events == at_once.events
    assert {dict(e[1])["kind"] for e in deferred.events} == {"tick", "bar"}
    assert deferred.model == at_once.model


def test_an_activation_that_makes_features_leaves_its_side_work_to_the_next() -> None:
    chunks = decoded_chunks(size=7)  # small batches: many activations release no candle
    _, per_batch = run(live_config(defer_side_work=True), chunks)
    with_model = [b for b in per_batch if b.model]
    without = [b for b in per_batch if not b.model]
    assert sum(sum(1 for tag, _ in b.model if tag == "Features") for b in with_model) > 50
    for batch in with_model:
        assert not batch.events
        assert not {"sentiment_ticks", "sentiment_bars"} & batch.tables.keys()
    # nothing waits for a prediction: the side work is done at once (live tick views stay prompt)
    ticks_in = [b for b in without if b.had_ticks]
    assert ticks_in and all(b.events and "sentiment_ticks" in b.tables for b in ticks_in)
    _, at_once = run(live_config(defer_side_work=False), chunks)
    assert any(b.events for b in at_once) and any("sentiment_bars" in b.tables for b in at_once)


def test_pending_side_work_survives_a_restart(chunks: list) -> None:
    config = live_config(defer_side_work=True, recovery=True)
    expected, restored = Collected(), Collected()
    for shard, pairs in chunks[3]:
        original = ShardLogic(config, None)
        for _, earlier in [c for chunk in chunks[:3] for c in chunk if c[0] == shard]:
            original.on_batch([earlier])
        original.on_batch([pairs])
        snapshot = original.snapshot()  # an epoch ends before the next activation
        assert _due(original)
        expected.add(original.on_notify()[0])
        again = ShardLogic(config, snapshot)  # the crash: the restarted step is built from the snapshot
        assert _due(again)
        restored.add(again.on_notify()[0])
        assert not again.later and not _due(again)
    assert expected.tables and expected.events
    assert restored.tables == expected.tables and restored.events == expected.events


def test_new_input_first_finishes_the_previous_side_work(chunks: list) -> None:
    config = live_config(defer_side_work=True)
    shard, pairs = chunks[5][0]
    logic = ShardLogic(config, None)
    logic.on_batch([pairs])
    assert logic.later
    _, later_pairs = next(c for chunk in chunks[6:] for c in chunk if c[0] == shard)
    items, _ = logic.on_batch([later_pairs])  # no notification in between
    got = Collected()
    got.add(items)
    symbols = {symbol for symbol, inputs in pairs if inputs.ticks is not None}
    assert {e[2] for e in got.events if dict(e[1])["kind"] == "tick"} >= symbols


def test_one_live_view_per_symbol_and_activation_of_its_newest_state(chunks: list) -> None:
    config = live_config(defer_side_work=True)
    shard = chunks[2][0][0]
    runs = [pairs for chunk in chunks[2:6] for s, pairs in chunk if s == shard]
    logic = ShardLogic(config, None)
    logic.on_batch(runs)  # several decode activations reach the shard in one activation
    items, _ = logic.on_notify()
    got = Collected()
    got.add(items)
    views = Counter(e[2] for e in got.events if dict(e[1])["kind"] == "tick")
    assert views and set(views.values()) == {1}
    for symbol in views:
        view = next(dict(e[1]) for e in got.events if e[2] == symbol and dict(e[1])["kind"] == "tick")
        assert view["as_of"] == logic.symbols[symbol].state.watermark


def test_a_recovery_store_from_before_the_side_work_change_still_resumes(chunks: list) -> None:
    import pickle

    config = live_config(defer_side_work=True, recovery=True)
    shard, pairs = chunks[0][0]
    original = ShardLogic(config, None)
    original.on_batch([pairs])
    old_format = pickle.dumps({name: s.state for name, s in original.symbols.items()})  # a dict of states
    resumed = ShardLogic(config, old_format)
    assert resumed.later == [] and resumed.symbols.keys() == original.symbols.keys()
    assert all(resumed.symbols[n].state.watermark == s.state.watermark for n, s in original.symbols.items())


# -- a batch gives what one record per batch gives (issue 15) -------------------------------
def replay_config() -> SymbolConfig:
    return symbol_config(load_settings(), FlowOptions(live=False, publish_events=False))


def _records(seed: int, minutes: int, silences: list[tuple[int, int]], ties: bool) -> list[dict[str, Any]]:
    """Two symbols: a 1m candle per minute (ingested 1 s after its close) and ~4 ticks a minute,
    no ticks in the `silences` (start minute, length); with `ties`, some ticks share a candle's
    ingest_ts (the source keeps its order). Ingest order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    recs: list[tuple[int, int, dict[str, Any]]] = []
    for symbol in ("AAAUSDT", "BBBUSDT"):
        price = 100.0
        for m in range(minutes):
            t = START + m * 60_000
            close = price * (1 + rng.normal(0, 0.002))
            candle = {
                "symbol": symbol,
                "interval": "1m",
                "open_time": t,
                "close_time": t + 60_000,
                "open": price,
                "high": max(price, close) * 1.001,
                "low": min(price, close) * 0.999,
                "close": close,
                "volume": 5.0,
                "ingest_ts": t + 61_000,
            }
            recs.append((candle["ingest_ts"], len(recs), candle))
            price = close
            if any(a <= m < a + n for a, n in silences):
                continue
            for k in range(int(rng.poisson(4))):
                ts = t + int(rng.integers(0, 60_000))
                ingest = ts + int(rng.integers(0, 3_000))
                if ties and k == 0 and rng.random() < 0.3:
                    ingest = t + 61_000 if rng.random() < 0.5 else t + 2_000  # a candle's, or a bar's last instant
                    ts = min(ts, ingest - 1)
                tick = {
                    "symbol": symbol,
                    "ts": ts,
                    "score": round(float(rng.uniform(-1, 1)), 3),
                    "provider": "newsapi",
                    "id": f"{symbol}-{m}-{k}",
                    "ingest_ts": ingest,
                }
                recs.append((ingest, len(recs) + (0 if rng.random() < 0.5 else 10**9), tick))
    recs.sort(key=lambda r: (r[0], r[1]))
    return [r for *_, r in recs]


def _through(records: list[dict[str, Any]], cuts: list[int]) -> Collected:
    """The records through a decode step and the shard step, split into batches at `cuts`."""
    edges = sorted({0, len(records), *(c % (len(records) + 1) for c in cuts)})
    decode = DecodeLogic(DecodeConfig(recovery=False), None)
    config = replay_config()
    shards: dict[str, ShardLogic] = {}
    got = Collected()
    for a, b in zip(edges, edges[1:]):
        out, _ = decode.on_batch([[("file:x", dict(r), None) for r in records[a:b]]])
        for item in out:
            if isinstance(item, ShardWork):
                logic = shards.get(item.shard) or shards.setdefault(item.shard, ShardLogic(config, None))
                items, _ = logic.on_batch([item.work])
                got.add(items)
                got.model_known += [
                    (type(m).__name__, m.row["symbol"], m.row["close_time"], m.known)
                    for it in items
                    if isinstance(it, ModelInputs)
                    for m in it.items
                ]
    return got


@pytest.mark.parametrize("minutes", [300, 700])
def test_one_batch_of_many_hours_gives_the_rows_of_one_record_per_batch(minutes: int) -> None:
    """Issue 15, item 1: a batch spanning more than the 256-bar ring used to leave most of its
    candles without their bar (`no_sentiment`)."""
    records = _records(1, minutes, [(100, 45)], ties=True)
    per_record = _through(records, list(range(len(records))))
    one_batch = _through(records, [])
    assert per_record.tables == one_batch.tables
    assert sorted(per_record.model_known) == sorted(one_batch.model_known)
    statuses = Counter(dict(k)["join_status"] for k in one_batch.tables["features"].elements())
    assert statuses["ok"] > 0.8 * (2 * minutes - 2) and "no_sentiment" not in statuses


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    silences=st.lists(st.tuples(st.integers(0, 90), st.integers(1, 60)), max_size=3),
    ties=st.booleans(),
    cuts=st.lists(st.integers(0, 2_000), max_size=12),
)
def test_any_batching_gives_the_rows_of_one_record_per_batch(
    seed: int, silences: list[tuple[int, int]], ties: bool, cuts: list[int]
) -> None:
    records = _records(seed, 90, silences, ties)
    per_record = _through(records, list(range(len(records))))
    batched = _through(records, cuts)
    assert per_record.tables == batched.tables
    assert sorted(per_record.model_known) == sorted(batched.model_known)


def test_refused_ticks_are_counted_once_each_by_reason(chunks: list) -> None:
    """Duplicate and late ticks are counted in bulk (one call per reason): the counters still
    move by exactly the refusal rows the shard step makes, reason by reason."""
    from prometheus_client import REGISTRY

    def counts() -> dict[str, float]:
        got = {}
        for reason in ("duplicate", "late"):
            errors = REGISTRY.get_sample_value("sentiment_ingest_errors_total", {"reason": reason}) or 0.0
            rejected = REGISTRY.get_sample_value("rejected_records_total", {"source": "sentiment", "reason": reason})
            got[reason], got[f"rejected {reason}"] = errors, rejected or 0.0
        return got

    before = counts()
    collected, _ = run(live_config(), chunks)
    after = counts()
    rows = Counter(dict(k)["reason"].split(" ")[0] for k in collected.tables["rejected_records"].elements())
    assert rows["duplicate"] > 0 and rows["late"] > 0
    for reason in ("duplicate", "late"):
        assert after[reason] - before[reason] == rows[reason]
        assert after[f"rejected {reason}"] - before[f"rejected {reason}"] == rows[reason]
