"""The shard step stores a batch's accepted ticks with one take per batch table and shard
(`symbol_logic.BatchTicks`), not one Arrow filter per symbol. What it stores and refuses is
checked here against the dedup/late rules recomputed tick by tick (the oracle of
tests/dataflows/test_sentiment_state.py), on batches of many symbols over every shard with
duplicates and late ticks: in replays, live with the side work deferred, with several
batches' side work in one activation, thawed from a snapshot taken before it was done, and
live bursts of one tick per symbol (whose rows the decode step marks by an int, not an array)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from dataflows.decode import DecodeConfig, DecodeLogic, shard_of
from dataflows.items import Rows, ShardWork
from dataflows.outputs import Pieces
from dataflows.signals import FlowOptions, symbol_config
from dataflows.symbol_logic import ShardLogic, SymbolConfig
from tickcast import metrics
from tickcast.settings import load_settings

START = 1_763_683_200_000
SYMBOLS = [f"S{i:02d}USDT" for i in range(80)]
PROVIDERS = ("newsapi", "twitter", "cryptopanic")
TRUST = {"newsapi": 0.5, "twitter": 0.8}  # cryptopanic: 1.0


def _config(live: bool) -> SymbolConfig:
    config = symbol_config(load_settings(), FlowOptions(live=live, publish_events=False, recovery=True))
    return dataclasses.replace(config, publish_live=False) if live else config


def _tick(rng: np.random.Generator, symbol: str, ingest: int, lag: int, tick_id: str, meta: dict) -> dict:
    """A tick record with random score, polarity and provider (the rng draws them in this order)."""
    return {
        "symbol": symbol,
        "ts": ingest - lag,
        "score": round(float(rng.uniform(-1, 1)), 4),
        "polarity": int(rng.integers(-1, 2)),
        "provider": PROVIDERS[int(rng.integers(0, 3))],
        "meta": {"lang": "en", **meta},
        "id": tick_id,
        "ingest_ts": ingest,
    }


def _batches(
    seed: int, n_batches: int, per_batch: int, window_ms: int, max_latency_ms: int, odd: float = 0.0
) -> list[list[dict]]:
    """Ticks of every symbol in ingest order, cut in batches of a 2-minute stretch each (a 1m
    candle per symbol in each, ingested after its close: live, its features make the shard
    defer its side work). ~2 % are re-sent ids (most within the dedup window, some after it),
    ~1 % are late; a fraction `odd` has a float ts, which the decode step's columnar path
    leaves to its per-record path (a batch of ticks by both paths)."""
    rng = np.random.default_rng(seed)
    batches, sent = [], []
    for b in range(n_batches):
        t0 = START + b * 120_000
        ticks = []
        for _ in range(per_batch):
            ingest = t0 + int(rng.integers(0, 120_000))
            r = rng.random()
            if r < 0.02 and sent:  # a re-sent tick: the same record, ingested again
                tick = dict(sent[int(rng.integers(max(0, len(sent) - 400), len(sent)))])
                if rng.random() < 0.2:  # re-sent after the dedup window: accepted again
                    ingest = tick["ingest_ts"] + window_ms + 1 + int(rng.integers(0, 1_000))
                else:
                    ingest = max(ingest, tick["ingest_ts"] + int(rng.integers(0, 5_000)))
                tick["ingest_ts"] = ingest
                if rng.random() < odd:
                    tick["ts"] = int(tick["ts"]) if isinstance(tick["ts"], float) else float(tick["ts"])
            else:
                lag = max_latency_ms + 1 + int(rng.integers(0, 60_000)) if r > 0.99 else int(rng.integers(0, 3_000))
                symbol = SYMBOLS[int(rng.integers(0, len(SYMBOLS)))]
                tick = _tick(rng, symbol, ingest, lag, f"{symbol}-{b}-{len(ticks)}", {"n": int(rng.integers(0, 9))})
                if rng.random() < odd:
                    tick["ts"] = float(tick["ts"])
                sent.append(tick)
            ticks.append(tick)
        candles = [
            {
                "symbol": s,
                "interval": "1m",
                "open_time": t0,
                "close_time": t0 + 60_000,
                "open": 100.0,
                "high": 101.0,
                "low": 99.0,
                "close": 100.5,
                "volume": 5.0,
                "ingest_ts": t0 + 60_500,
            }
            for s in SYMBOLS
        ]
        records = sorted([*ticks, *candles], key=lambda r: r["ingest_ts"])  # stable: ties as sent
        batches.append([r for r in records if r["ingest_ts"] < t0 + 120_000])  # (a re-send may fall later)
    return batches


def _bursts(seed: int, n_batches: int, max_latency_ms: int) -> list[list[dict]]:
    """Live bursts: one tick per symbol and batch (the decode step's one-row-per-symbol path);
    ~10 % re-send the symbol's tick of the batch before, ~5 % are late."""
    rng = np.random.default_rng(seed)
    batches: list[list[dict]] = []
    for b in range(n_batches):
        t0 = START + b * 10_000
        batch = []
        for i, symbol in enumerate(rng.permutation(SYMBOLS).tolist()):
            ingest = t0 + i
            r = rng.random()
            if r < 0.1 and b:
                tick = dict(next(t for t in batches[-1] if t["symbol"] == symbol), ingest_ts=ingest)
            else:
                lag = max_latency_ms + 1 + int(rng.integers(0, 9_000)) if r > 0.95 else int(rng.integers(0, 900))
                tick = _tick(rng, symbol, ingest, lag, f"{symbol}-{b}", {})
            batch.append(tick)
        batches.append(batch)
    return batches


def _expected(batches: list[list[dict]], window_ms: int, max_latency_ms: int) -> tuple[Counter, Counter]:
    """(accepted tick rows, (reason, refused record)) by the rules, tick by tick in ingest order:
    late when ingest_ts - ts > max latency, else a duplicate when its id was accepted within
    the window before."""
    seen: dict[str, int] = {}
    accepted: Counter = Counter()
    refused: Counter = Counter()
    for tick in (r for batch in batches for r in batch if "id" in r):
        row = _key(tick)
        lag = tick["ingest_ts"] - int(tick["ts"])  # (a float ts is decoded to its int)
        if lag > max_latency_ms:
            refused[(f"late tick: ingest_ts - ts = {lag} ms > {max_latency_ms} ms", row)] += 1
        elif tick["id"] in seen and tick["ingest_ts"] - seen[tick["id"]] <= window_ms:
            refused[(f"duplicate tick id {tick['id']!r} within {window_ms // 1000}s", row)] += 1
        else:
            seen[tick["id"]] = tick["ingest_ts"]
            accepted[row] += 1
    return accepted, refused


def _key(tick: dict[str, Any]) -> tuple[Any, ...]:
    meta = json.loads(tick["meta"]) if isinstance(tick["meta"], str) else tick["meta"]
    fields = ("id", "symbol", "ts", "score", "polarity", "provider", "ingest_ts")
    return (*(tick[k] for k in fields), tuple(sorted(meta.items())))


def _rows(piece: Any) -> list[dict[str, Any]]:
    if isinstance(piece, Pieces):
        return [row for p in piece for row in _rows(p)]
    return piece.to_pylist() if isinstance(piece, pa.Table) else list(piece)


def _counts() -> dict[str, float]:
    metrics.TICK_PROVIDERS.flush()
    got = {p: REGISTRY.get_sample_value("sentiment_ingest_total", {"provider": p}) or 0.0 for p in PROVIDERS}
    for reason in ("duplicate", "late"):
        got[reason] = REGISTRY.get_sample_value("sentiment_ingest_errors_total", {"reason": reason}) or 0.0
    return got


def _run(batches: list[list[dict]], live: bool, together: int, thaw: bool) -> tuple[list[dict], list[dict], bool]:
    """The batches through the decode step and the shards; `together` decode batches per shard
    activation; `thaw`: each shard's deferred side work is done by a shard thawed from its
    snapshot. Returns the sentiment_ticks rows, the rejected_records rows and whether any
    side work was deferred."""
    config = _config(live)
    decode = DecodeLogic(DecodeConfig(recovery=False, trust=TRUST), None)
    shards: dict[str, ShardLogic] = {}
    stored: list[dict] = []
    rejected: list[dict] = []
    deferred = False

    def take(items: list[tuple[Any, ...]]) -> None:
        for item in items:
            if isinstance(item, Rows) and item.table == "sentiment_ticks":
                stored.extend(_rows(item.rows))
            elif isinstance(item, Rows) and item.table == "rejected_records":
                rejected.extend(_rows(item.rows))

    for i in range(0, len(batches), together):
        work: dict[str, list[Any]] = {}
        for batch in batches[i : i + together]:  # "file:x": the columnar decode path
            out, _ = decode.on_batch([[("file:x", dict(r), None) for r in batch]])
            for item in out:
                if isinstance(item, ShardWork):
                    work.setdefault(item.shard, []).append(item.work)
        for shard, values in work.items():
            logic = shards.get(shard) or shards.setdefault(shard, ShardLogic(config, None))
            take(logic.on_batch(values)[0])
            if logic.later:
                deferred = True
                if thaw:
                    logic = shards[shard] = ShardLogic(config, logic.snapshot())
                take(logic.on_notify()[0])
    for logic in shards.values():
        take(logic.on_eof()[0])
    return stored, rejected, deferred


@pytest.mark.parametrize(
    ("live", "together", "thaw", "odd"),
    [
        (False, 1, False, 0.0),
        (False, 3, False, 0.0),
        (True, 1, False, 0.0),
        (True, 2, True, 0.0),
        (False, 1, False, 0.3),
    ],
)
def test_the_stored_and_refused_ticks_are_the_rules_ones(live: bool, together: int, thaw: bool, odd: float) -> None:
    cfg = _config(live).sentiment
    window, max_latency = cfg.dedup_window_ms, cfg.max_latency_ms
    batches = _batches(7, 4, 3_000, window, max_latency, odd)
    accepted, refused = _expected(batches, window, max_latency)
    assert len({shard_of(s) for s in SYMBOLS}) == 16  # every shard
    reasons = Counter(reason.split(" ")[0] for reason, _ in refused.elements())
    assert reasons["duplicate"] > 100 and reasons["late"] > 20  # nearly every symbol refuses some
    before = _counts()
    stored, rejected, deferred = _run(batches, live, together, thaw)
    after = _counts()
    assert deferred == live
    assert Counter(map(_key, stored)) == accepted
    assert Counter((r["reason"], _key(json.loads(r["payload"]))) for r in rejected) == refused
    assert all(r["source"] == "sentiment" and r["provider"] in PROVIDERS for r in rejected)
    assert all(r["weight"] == TRUST.get(r["provider"], 1.0) for r in stored)
    # A tick stored twice (re-sent after the dedup window) is stored in arrival order: of rows
    # with the same key in one insert, sentiment_ticks (a ReplacingMergeTree) keeps the last.
    again: dict[tuple[Any, ...], list[int]] = {}
    for r in stored:
        again.setdefault((r["symbol"], r["ts"], r["id"]), []).append(r["ingest_ts"])
    twice = [ingests for ingests in again.values() if len(ingests) > 1]
    assert twice and all(ingests == sorted(ingests) for ingests in twice)
    # the metrics count the same ticks: accepted per provider, refused per reason
    by_provider = Counter(row[5] for row in accepted.elements())
    for p in PROVIDERS:
        assert after[p] - before[p] == by_provider[p]
    for reason in ("duplicate", "late"):
        assert after[reason] - before[reason] == reasons[reason]


@pytest.mark.parametrize("together", [1, 3])
def test_live_bursts_of_one_tick_per_symbol_store_and_refuse_the_rules_ones(together: int) -> None:
    cfg = _config(True).sentiment
    batches = _bursts(11, 9, cfg.max_latency_ms)
    accepted, refused = _expected(batches, cfg.dedup_window_ms, cfg.max_latency_ms)
    reasons = Counter(reason.split(" ")[0] for reason, _ in refused.elements())
    assert reasons["duplicate"] > 20 and reasons["late"] > 10
    stored, rejected, _ = _run(batches, True, together, thaw=together > 1)
    assert Counter(map(_key, stored)) == accepted
    assert Counter((r["reason"], _key(json.loads(r["payload"]))) for r in rejected) == refused
