"""Per-symbol state: sentiment bars/EMAs, market features, labels and the leak-free as-of join.

Symbols are grouped in a few shards (`dataflows.decode.SHARDS`, by a stable hash of the name), and one
`ShardLogic` (Bytewax `stateful_batch`, keyed by shard) holds the states of its symbols.
One Bytewax key per symbol cost ~1 µs per item per downstream step for every row and
event each symbol emitted; a shard emits one item per table per activation (see
dataflows/outputs.py), so a 1,000-symbol candle burst moves ~10 items instead of ~7,000.

Records arrive in ingest order (see dataflows/sources.py), and a symbol's watermark is
the largest `ingest_ts` it has accepted. Candle T waits until the watermark passes
`T + grace`; then the sentiment bar ending at T — built only from ticks with `ts < T`
and `ingest_ts <= T + grace` (DESIGN §5) — is closed, and the candle gets it. A live
candle that waits longer than `timeout_ms` of wall clock is released as a join miss.

Live, an activation that releases features for the model stage does only what the
predictions wait for (dedup, bars, market features, the join, labels) and leaves the
rest — the stored ticks and bars, the live sentiment events, the tick metrics — to the
shard's next activation (`notify_at` now), which Bytewax runs after the model stage has
had the features. That side work is data (`Later`), kept in the snapshot until it is
done, and done before any new input.
"""

from __future__ import annotations

import bisect
import functools
import operator
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

from dataflows.decode import SymbolInput, rejected_row, rejected_rows
from dataflows.items import Features, Label, LiveEvent, PublishView, SideWork, StoreBars, StoreTicks, TableRow
from dataflows.market_state import CandleRejected, MarketConfig, MarketState
from dataflows.outputs import Out
from dataflows.progress import Progress
from dataflows.sentiment_state import SentimentConfig, SentimentState
from dataflows.snapshot import freeze, thaw
from dataflows.tick_batches import SymbolTicks, tick_records
from tickcast import metrics
from tickcast.features import OPTIONAL_SENTIMENT_FEATURES, SENTIMENT_FEATURES
from tickcast.records import INTERVAL_MS, Rejection
from tickcast.store import ColumnBlock

_SENT_COLUMNS = SENTIMENT_FEATURES + OPTIONAL_SENTIMENT_FEATURES
_NO_SENTIMENT: dict[str, None] = dict.fromkeys(_SENT_COLUMNS)  # a features row's sentiment without a bar
_EXCLUDED: dict[str, Any] = {**_NO_SENTIMENT, "join_status": "excluded"}  # ... when sentiment is not a feature


def _by_threshold(pending: PendingCandle) -> tuple[int, str]:
    return pending.close_time, pending.interval


_STATUS_REASON = {1: "duplicate", 2: "late"}
# The items a symbol appends (dataflows/items.py NamedTuples) are built by tuple.__new__: a
# NamedTuple's own __new__ is a Python function, ~0.3 µs more per item, and a live candle burst
# makes five a symbol. The same object and the same pickle either way.
_new = tuple.__new__
_NO_TICKS = np.empty(0, np.int64)  # `after` of a batch without ticks (never indexed)


@dataclass(frozen=True)
class SymbolConfig:
    sentiment: SentimentConfig
    grace_ms: int = 2_000
    timeout_ms: int | None = 15_000  # None: no wall-clock timeout (replays)
    horizon: int = 1
    include_sentiment: bool = True
    step_name: str = "1m"
    publish_live: bool = True
    max_pending_candles: int = 1_000
    recovery: bool = True  # False: snapshots are skipped (no recovery store)
    defer_side_work: bool = False  # True (live): side work after the model stage, see the module doc


@dataclass
class PendingCandle:
    close_time: int
    interval: str
    close: float
    market: dict[str, float]
    arrived_wall: float
    ohlc: tuple[float, float, float] | None = None  # open, high, low: carried for the trading stage


@dataclass
class SymbolState:
    sentiment: SentimentState | None = None
    markets: dict[str, MarketState] = field(default_factory=dict)
    pending: list[PendingCandle] = field(default_factory=list)
    watermark: int = 0
    symbol: str = ""


class ShardOut(Out):
    """`Out` plus the activation's hot-path metrics, recorded once at the end: a metric call
    per symbol costs more than the symbol's own work in a candle burst."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []  # (ingest_ts, ts, accepted)
        self.providers: list[Any] = []
        self.candles: Counter[str] = Counter()
        self.join_attempts = 0
        self.join_missing: Counter[str] = Counter()

    def record_metrics(self) -> None:
        if self.latencies:
            metrics.TICK_LATENCIES.extend(self.latencies)
            metrics.TICK_PROVIDERS.extend(self.providers)
        for interval, n in self.candles.items():
            metrics.CANDLES_INGESTED.labels(interval).inc(n)
        if self.join_attempts:
            metrics.FEATURE_JOIN_ATTEMPTS.inc(self.join_attempts)
        for cause, n in self.join_missing.items():
            metrics.FEATURE_JOIN_MISSING.labels(cause).inc(n)


# Side work of an activation, as data (it is part of the snapshot until done; dataflows/items.py):
#   StoreTicks(symbol, SymbolTicks, status)    store the accepted ticks, refuse the others
#                                              (`BatchTicks`: per batch table, not per symbol)
#   StoreBars(symbol, bar_ends, bar_values)    store the closed bars, publish their events
#   PublishView(symbol)                        publish the symbol's live sentiment view
Later = list[SideWork]
_SIDE_WORK = {"ticks": StoreTicks, "bars": StoreBars, "view": PublishView}  # the tagged tuples of older snapshots


def _side_work_item(work: Any) -> SideWork:
    return _SIDE_WORK[work[0]](*work[1:]) if type(work) is tuple else work


@dataclass
class ShardState:
    symbols: dict[str, SymbolState]
    later: Later


class ShardLogic(StatefulBatchLogic[list[tuple[str, SymbolInput]] | Progress, tuple[Any, ...], bytes | None]):
    """The symbols of one shard; each value is one decode activation's (symbol, input) pairs,
    or (replays) a partition's `Progress`, handed on to the model stage behind the rows."""

    def __init__(self, config: SymbolConfig, state: bytes | ShardState | None) -> None:
        self.config = config
        shard = thaw(state) or ShardState({}, [])
        if isinstance(shard, dict):  # a recovery store written before side work was deferred
            shard = ShardState(shard, [])
        self.symbols = {name: SymbolLogic(config, st) for name, st in shard.symbols.items()}
        self.later: Later = [_side_work_item(work) for work in shard.later]

    def on_batch(self, values: list[list[tuple[str, SymbolInput]] | Progress]) -> tuple[list[tuple[Any, ...]], bool]:
        out = ShardOut()
        self._side_work(out)  # the previous activation's, against the state it saw
        for pairs in values:
            if isinstance(pairs, Progress):  # replays: a partition's progress, behind its records
                out.model.append(pairs)
                continue
            symbols, later = self.symbols, self.later
            for symbol, inputs in pairs:
                logic = symbols.get(symbol)
                if logic is None:
                    logic = symbols[symbol] = SymbolLogic(self.config, SymbolState(symbol=symbol))
                logic.on_input(inputs, out, later)
        if not (self.config.defer_side_work and out.model):  # nothing waits for a prediction: no reason to wait
            self._side_work(out)
        if not self.later:
            self._record_lag()
        out.record_metrics()
        return out.done(), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[tuple[Any, ...]], bool]:
        out = ShardOut()
        self._side_work(out)
        now = time.time()
        for logic in self._waiting():
            deadline = logic.deadline()
            if deadline is not None and deadline <= now:
                logic.on_timeout(now, out, self.later)
        self._side_work(out)
        out.record_metrics()
        return out.done(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[Any, ...]], bool]:
        out = ShardOut()
        self._side_work(out)
        out.record_metrics()
        return out.done(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.later:
            return datetime.now(UTC)
        if self.config.timeout_ms is None:
            return None
        deadlines = [d for d in (s.deadline() for s in self._waiting()) if d is not None]
        return datetime.fromtimestamp(min(deadlines), tz=UTC) if deadlines else None

    def snapshot(self) -> bytes | None:
        state = ShardState({name: s.state for name, s in self.symbols.items()}, self.later)
        return freeze(state, enabled=self.config.recovery)

    def _waiting(self) -> list[SymbolLogic]:
        """The symbols with a candle waiting for its join (the others have no deadline): Bytewax
        asks `notify_at` after every activation, so this scan runs for every symbol of the shard
        each time and is kept to an attribute check."""
        return [logic for logic in self.symbols.values() if logic.state.pending]

    def _side_work(self, out: ShardOut) -> None:
        if not self.later:
            return
        later, self.later = self.later, []
        viewed: set[str] = set()
        batches: dict[int, BatchTicks] = {}  # the Arrow ticks, by the batch table they came in
        for work in later:
            symbol = work.symbol
            logic = self.symbols[symbol]
            if isinstance(work, StoreTicks):  # one per (symbol, activation): no hot path
                source = work.ticks.source
                if source is None:  # dict rows (small live batches): stored as they are
                    logic.store_ticks(work.ticks, work.status, out)
                else:
                    batch = batches.get(id(source))  # (`later` holds the table until the end)
                    if batch is None:
                        batch = batches[id(source)] = BatchTicks(source)
                    batch.add(work.ticks, work.status, out)
            elif isinstance(work, StoreBars):
                logic.store_bars(work.ends, work.bar_values, out)
            elif symbol not in viewed:  # PublishView: one per symbol and activation, of its state now
                viewed.add(symbol)
                logic.publish_view(out)
        for batch in batches.values():
            batch.store(self.config.sentiment, out)
        self._record_lag()

    def _record_lag(self) -> None:
        if self.symbols:
            metrics.FLOW_LAG_MS.set(time.time() * 1000 - max(s.state.watermark for s in self.symbols.values()))


def _refuse(cfg: SentimentConfig, ticks: list[dict[str, Any]], codes: list[int], out: ShardOut) -> None:
    """rejected_records rows of refused ticks (decode_record dicts) with their status codes."""
    window_s, max_latency = cfg.dedup_window_ms // 1000, cfg.max_latency_ms
    rejections = [
        Rejection.for_record(
            "sentiment",
            f"duplicate tick id {tick['id']!r} within {window_s}s"
            if code == 1
            else f"late tick: ingest_ts - ts = {tick['ingest_ts'] - tick['ts']} ms > {max_latency} ms",
            tick,
        )
        for tick, code in zip(ticks, codes, strict=True)
    ]
    for code, n in Counter(codes).items():  # counted once per reason, not per tick (`rejected_rows`)
        metrics.SENTIMENT_INGEST_ERRORS.labels(_STATUS_REASON.get(code, f"status {code}")).inc(n)
    out.tables["rejected_records"].extend(rejected_rows(rejections))  # what out.append(TableRow(...)) does


class BatchTicks:
    """The side work's Arrow ticks from one batch table (`SymbolTicks.source`): every symbol's
    statuses are gathered, then the accepted rows are cut with one take for the shard and the
    refused ones with another. An Arrow call per symbol (a filter of its rows, nearly every
    symbol of a replay batch having a duplicate or late tick) cost more than the rows."""

    def __init__(self, source: pa.Table) -> None:
        self.source = source
        self.accepted: list[np.ndarray | slice] = []  # positions in `source`
        self.refused: list[np.ndarray] = []  # positions in `source`, in the order they are refused
        self.codes: list[np.ndarray] = []  # their statuses

    def add(self, ticks: SymbolTicks, status: np.ndarray, out: ShardOut) -> None:
        """One symbol's ticks (what `SymbolLogic.store_ticks` does with one symbol's rows)."""
        n = len(ticks)
        if n < 64 and status.tolist().count(0) == n:  # a list is faster when tiny
            n_ok = n
        else:
            accepted = status == 0
            n_ok = int(np.count_nonzero(accepted))
        if n_ok == n:
            at = ticks.at
            self.accepted.append(slice(at, at + n) if type(at) is int else ticks.positions())
            out.latencies.append((ticks.ingest_ts, ticks.ts, None))
            return
        at = ticks.positions()
        if n_ok:
            self.accepted.append(at[accepted])
            out.latencies.append((ticks.ingest_ts, ticks.ts, accepted))
        refused = (~accepted).nonzero()[0]
        self.refused.append(at[refused])
        self.codes.append(status[refused])

    def store(self, cfg: SentimentConfig, out: ShardOut) -> None:
        source = self.source
        if self.accepted:
            # the rows in the table's order (a mask, not a sort): the gather runs through it
            # once, ~1.5x faster than symbol by symbol (row order in an insert does not matter)
            keep = np.zeros(source.num_rows, bool)
            for at in self.accepted:
                keep[at] = True
            rows = np.flatnonzero(keep)
            table = source if rows.size == source.num_rows else source.take(pa.array(rows))
            out.add_table("sentiment_ticks", table)
            out.providers.append(table.column("provider"))
        if self.refused:  # in the order the symbols refused them, as one symbol at a time did
            positions = self.refused[0] if len(self.refused) == 1 else np.concatenate(self.refused)
            codes = self.codes[0] if len(self.codes) == 1 else np.concatenate(self.codes)
            _refuse(cfg, tick_records(source, positions), codes.tolist(), out)


class SymbolLogic:
    """One symbol's step: `on_input` per batch of its records, `on_timeout` for waiting candles."""

    def __init__(self, config: SymbolConfig, state: SymbolState) -> None:
        self.config = config
        self.state = state
        self._labels: list[Label] = []
        self._picks: BarPicks | None = None  # where the features row's sentiment values sit (`_bar_picks`)

    @property
    def symbol(self) -> str:
        return self.state.symbol

    @property
    def _sentiment(self) -> SentimentState:
        """The bar state, for work that only follows a tick (which creates it)."""
        sentiment = self.state.sentiment
        assert sentiment is not None
        return sentiment

    def on_input(self, inputs: SymbolInput, out: ShardOut, later: Later) -> None:
        """One batch of the symbol's records, with the result of one record per batch.

        Candles get their market features and labels first (those do not depend on ticks).
        Then each tick is admitted after the watermark before it, and the waiting candles
        are released at the record that would have released them if every record came
        alone, with the bar state as it was there (`_release`, `_close`). So features do
        not depend on batch boundaries: a 200,000-record replay batch gives what live
        records one at a time give.
        """
        ticks, candles = inputs.ticks, inputs.candles
        start = self.state.watermark
        n_ticks = 0 if ticks is None else ticks.ts.size
        cuts = inputs.cuts
        # (ticks before it, the candle waiting for its join or None when refused, its ingest_ts)
        if len(candles) == 1:  # live: one candle per symbol and burst
            candle = candles[0]
            arrived = [(n_ticks if cuts is None else cuts[0], self._candle(candle, out), candle["ingest_ts"])]
        else:
            if cuts is None:
                cuts = [n_ticks] * len(candles)
            arrived = [(cut, self._candle(candle, out), candle["ingest_ts"]) for candle, cut in zip(candles, cuts)]
        after = None if ticks is None else self._ticks(ticks, start, arrived, later)
        self._close(self._release(start, arrived, after, n_ticks, out), out, later)
        # Labels go after the features released in this batch; the model stage orders by
        # event time anyway, this keeps the two in one downstream batch when possible.
        if self._labels:
            out.model.extend(self._labels)
            self._labels.clear()
        if n_ticks and self.config.publish_live:
            later.append(_new(PublishView, (self.state.symbol,)))

    def deadline(self) -> float | None:
        """Wall time (s) at which the oldest waiting candle times out; None when none waits."""
        if self.config.timeout_ms is None or not self.state.pending:
            return None
        return min(p.arrived_wall for p in self.state.pending) + self.config.timeout_ms / 1000

    def on_timeout(self, now: float, out: ShardOut, later: Later) -> None:
        if self.config.timeout_ms is None:  # replays: no wall-clock timeout
            return
        deadline = now - self.config.timeout_ms / 1000
        expired = [p for p in self.state.pending if p.arrived_wall <= deadline]
        if expired:
            # Waited long enough in wall-clock time: close the bars as they are.
            forced = max(p.close_time for p in expired) + self.config.grace_ms
            self._advance_and_release(max(self.state.watermark, forced), out, later, cause="timeout")

    # --- side work (ShardLogic._side_work) ----------------------------------------------
    def store_ticks(self, ticks: SymbolTicks, status: np.ndarray, out: ShardOut) -> None:
        """Dict-row ticks (small live batches); Arrow ticks go through `BatchTicks`."""
        n = len(ticks)
        accepted = status == 0
        n_ok = status.tolist().count(0) if n < 64 else int(np.count_nonzero(accepted))  # a list is faster when tiny
        if n_ok:
            stored = ticks.stored(accepted, n_ok)
            out.add_table("sentiment_ticks", stored)
            out.latencies.append((ticks.ingest_ts, ticks.ts, None if n_ok == n else accepted))
            out.providers.append([r["provider"] for r in stored])
        if n_ok < n:
            self._refused(ticks, status, out)

    def store_bars(self, ends: np.ndarray, vals: np.ndarray, out: ShardOut) -> None:
        sentiment, symbol = self._sentiment, self.symbol
        if len(ends):  # what out.add_table does: an empty block is dropped
            out.columnar["sentiment_bars"].append(self._bar_block(ends, vals))  # NaN -> NULL in the store
        if self.config.publish_live:
            for bar_end, row in zip(ends.tolist(), vals.tolist(), strict=True):
                data = {"kind": "bar", "symbol": symbol, "step": self.config.step_name}
                data.update(sentiment.row(bar_end, row))
                out.events.append(LiveEvent("sentiment", data, symbol, bar_end))

    def publish_view(self, out: ShardOut) -> None:
        if self.state.sentiment is not None:
            symbol, watermark = self.state.symbol, self.state.watermark
            latest = self.state.sentiment.latest(watermark)
            out.events.append(LiveEvent("sentiment", {"kind": "tick", "symbol": symbol, **latest}, symbol, watermark))

    # --- ticks --------------------------------------------------------------------------
    def _ticks(
        self, ticks: SymbolTicks, start: int, arrived: list[tuple[int, PendingCandle | None, int]], later: Later
    ) -> np.ndarray:
        """Add ticks, each after the watermark before it; returns the watermark after each tick
        (`_release` adds the candles among them)."""
        sentiment = self.state.sentiment
        if sentiment is None:
            sentiment = self.state.sentiment = SentimentState(self.config.sentiment)
        # decode checked every field, and SymbolTicks has the engine's dtypes: no TickBatch
        ts, ingest_ts = ticks.ts, ticks.ingest_ts
        n = ts.size
        # A candle among the ticks moves the watermark they are admitted after; that matters
        # only when it was ingested no earlier than some tick after it (live, a candle comes
        # before the tick that releases it and never is).
        if len(arrived) == 1:  # live: one candle per batch
            cut, pending, newest = arrived[0]
            among = [(cut, newest)] if pending is not None and cut < n else []
        else:
            among = [(cut, t) for cut, p, t in arrived if p is not None and cut < n]
            newest = max((t for _, t in among), default=0)
        if among and newest >= (min(ingest_ts.tolist()) if n < 16 else ingest_ts.min()):
            cuts = np.array([cut for cut, _ in among], np.int64)
            status, after = sentiment.admit_after(
                ts, ingest_ts, ticks.score, ticks.polarity, ticks.weight, ticks.id_hash, start,
                cuts, np.array([t for _, t in among], np.int64),
            )  # fmt: skip
        else:
            status, after = sentiment.admit_after(
                ts, ingest_ts, ticks.score, ticks.polarity, ticks.weight, ticks.id_hash, start
            )  # fmt: skip
        later.append(_new(StoreTicks, (self.state.symbol, ticks, status)))
        return after

    def _refused(self, ticks: SymbolTicks, status: Any, out: ShardOut) -> None:
        refused = (status != 0).nonzero()[0]
        _refuse(self.config.sentiment, ticks.records(refused), status[refused].tolist(), out)

    # --- candles ------------------------------------------------------------------------
    def _candle(self, candle: dict[str, Any], out: ShardOut) -> PendingCandle | None:
        """Market features and labels of one candle; the candle to join when it was accepted
        (new and in order), else None."""
        interval = candle["interval"]
        state = self.state
        market = state.markets.get(interval)
        if market is None:
            market = state.markets[interval] = MarketState(
                MarketConfig(horizon=self.config.horizon, interval_ms=INTERVAL_MS[interval])
            )
        close_time, open_, high, low, close = (
            candle["close_time"], candle["open"], candle["high"], candle["low"], candle["close"]
        )  # fmt: skip
        try:
            feats, labels = market.add_candle(
                candle["open_time"], close_time, open_, high, low, close, candle["volume"]
            )  # fmt: skip
        except CandleRejected as exc:
            out.append(TableRow("rejected_records", rejected_row(Rejection.for_record("market", str(exc), candle))))
            return None
        if feats is None:  # the same candle again (at-least-once delivery): already handled
            return None
        out.candles[interval] += 1
        out.tables["candles"].append(candle)
        for label in labels:
            row = {"symbol": state.symbol, "interval": interval, **label}
            out.tables["labels"].append(row)
            self._labels.append(_new(Label, (row, candle["ingest_ts"])))  # known from this candle's ingest on
        return PendingCandle(close_time, interval, close, feats, time.time(), (open_, high, low))

    # --- the join -----------------------------------------------------------------------
    def _release(
        self,
        start: int,
        arrived: list[tuple[int, PendingCandle | None, int]],
        after: np.ndarray | None,
        n_ticks: int,
        out: ShardOut,
    ) -> list[tuple[int, PendingCandle]]:
        """Walk the batch's records in order, as one record per batch would: the watermark
        after each record, candles joining the waiting list (bounded: the oldest is dropped)
        and leaving it at the first record whose watermark reaches close_time + grace.
        Returns (watermark at that record, candle) in release order; sets the new watermark."""
        state, grace = self.state, self.config.grace_ms
        waiting = state.pending
        if not waiting and len(arrived) <= 1:  # live: nothing waiting and one candle at most
            return self._release_one(start, arrived, after, n_ticks)
        if after is None:  # no tick in the batch: `_among_ticks` is never called
            after = _NO_TICKS
        releases: list[tuple[int, PendingCandle]] = []
        soonest = min(p.close_time for p in waiting) + grace if waiting else None  # the first threshold due
        w = start
        done = 0  # ticks walked
        for cut, pending, ingest in arrived:
            if cut > done:
                w, soonest, waiting = self._among_ticks(w, soonest, waiting, after, done, cut, releases)
                done = cut
            if pending is None:
                continue
            if len(waiting) >= self.config.max_pending_candles:
                waiting.pop(0)  # bounded state; counted as a miss when it would have been released
                out.join_missing["overflow"] += 1
                soonest = min(p.close_time for p in waiting) + grace if waiting else None
            waiting.append(pending)
            threshold = pending.close_time + grace
            soonest = threshold if soonest is None else min(soonest, threshold)
            w = max(w, ingest)
            if soonest <= w:
                due = [p for p in waiting if p.close_time + grace <= w]
                waiting = [p for p in waiting if p.close_time + grace > w]
                soonest = min(p.close_time for p in waiting) + grace if waiting else None
                if len(due) > 1:
                    due.sort(key=_by_threshold)
                releases.extend((w, p) for p in due)
        if n_ticks > done:
            w, soonest, waiting = self._among_ticks(w, soonest, waiting, after, done, n_ticks, releases)
        state.pending = waiting
        state.watermark = w
        return releases

    def _release_one(
        self, start: int, arrived: list[tuple[int, PendingCandle | None, int]], after: np.ndarray | None, n_ticks: int
    ) -> list[tuple[int, PendingCandle]]:
        """`_release` with nothing waiting before the batch and at most one candle in it."""
        state = self.state
        if after is None:  # no tick in the batch (n_ticks == 0): never indexed
            after = _NO_TICKS
        end = start if n_ticks == 0 else max(start, int(after[-1]))
        pending = arrived[0][1] if arrived else None
        if pending is None:
            state.watermark = end
            return []
        cut, _, ingest = arrived[0]
        w = max(start if cut == 0 else max(start, int(after[cut - 1])), ingest)  # just after the candle
        state.watermark = max(w, end)
        threshold = pending.close_time + self.config.grace_ms
        if w >= threshold:  # released by its own arrival
            return [(w, pending)]
        if state.watermark < threshold:
            state.pending = [pending]
            return []
        if n_ticks - cut == 1:
            return [(state.watermark, pending)]
        marks = after[cut:].tolist()
        return [(max(w, marks[bisect.bisect_left(marks, threshold)]), pending)]

    def _among_ticks(
        self,
        w: int,
        soonest: int | None,
        waiting: list[PendingCandle],
        after: np.ndarray,
        done: int,
        cut: int,
        releases: list[tuple[int, PendingCandle]],
    ) -> tuple[int, int | None, list[PendingCandle]]:
        """Ticks done..cut-1 (the watermark after tick i is max(w, after[i])): release the
        waiting candles they reach. Returns the new (watermark, soonest threshold, waiting)."""
        top = max(w, int(after[cut - 1]))
        if soonest is None or soonest > top:
            return top, soonest, waiting
        grace = self.config.grace_ms
        due = [p for p in waiting if p.close_time + grace <= top]
        waiting = [p for p in waiting if p.close_time + grace > top]
        if len(due) > 1:
            due.sort(key=_by_threshold)
        single = cut - done == 1
        marks: list[int] = [] if single else after[done:cut].tolist()
        for p in due:  # the first tick whose watermark reaches the candle's threshold
            threshold = p.close_time + grace
            if single or w >= threshold:
                releases.append((top if single else max(w, marks[0]), p))
            else:
                releases.append((max(w, marks[bisect.bisect_left(marks, threshold)]), p))
        return top, (min(p.close_time for p in waiting) + grace if waiting else None), waiting

    def _close(self, releases: list[tuple[int, PendingCandle]], out: ShardOut, later: Later) -> None:
        """Close the bars up to the watermark and join the released candles, each with the bar
        ring as it was at its release: bars are closed in as few steps as keep every bar a
        candle could see at its release in the ring until it is read."""
        sentiment = self.state.sentiment
        if sentiment is None:  # no tick yet: nothing to close, no sentiment to join
            for known, pending in releases:
                self._emit_features(pending, None, known, None, out)
            return
        cfg = self.config.sentiment
        span = cfg.history_bars * cfg.step_ms  # a bar leaves the ring when the last bar is span later
        if len(releases) == 1:  # live: a candle released by the batch's last records; one close
            known, pending = releases[0]
            grace, step, watermark = cfg.grace_ms, cfg.step_ms, self.state.watermark
            last = (known - grace) // step * step
            final = (watermark - grace) // step * step
            close_time = pending.close_time
            if close_time > final - span or close_time <= last - span:
                ends, vals = sentiment.advance_columns(watermark)
                if ends.size:
                    later.append(_new(StoreBars, (self.state.symbol, ends, vals)))
                self._emit_features(pending, None, known, last, out)
                return
        deferred: list[tuple[int, int, PendingCandle]] = []  # (last bar at release, watermark, candle)
        oldest_seen: int | None = None  # smallest close_time of a deferred candle that saw its bar
        for known, pending in releases:
            last = (known - cfg.grace_ms) // cfg.step_ms * cfg.step_ms
            if oldest_seen is not None and oldest_seen <= last - span:
                self._join(deferred, out, later)  # closing up to `last` would drop a bar not yet read
                deferred, oldest_seen = [], None
            deferred.append((last, known, pending))
            if pending.close_time > last - span:
                oldest_seen = pending.close_time if oldest_seen is None else min(oldest_seen, pending.close_time)
        last = (self.state.watermark - cfg.grace_ms) // cfg.step_ms * cfg.step_ms
        if oldest_seen is not None and oldest_seen <= last - span:
            self._join(deferred, out, later)
            deferred = []
        self._close_bars(self.state.watermark, later)
        self._join(deferred, out, later, closed=True)

    def _join(
        self, deferred: list[tuple[int, int, PendingCandle]], out: ShardOut, later: Later, *, closed: bool = False
    ) -> None:
        """Close the bars up to the newest deferred release (unless `closed`), then join each
        deferred candle with the ring as it was at its own release."""
        if not deferred:
            return
        if not closed:
            self._close_bars(deferred[-1][1], later)
        for last, known, pending in deferred:
            self._emit_features(pending, None, known, last, out)

    def _close_bars(self, watermark: int, later: Later) -> None:
        ends, vals = self._sentiment.advance_columns(watermark)
        if ends.size:
            later.append(_new(StoreBars, (self.symbol, ends, vals)))

    def _advance_and_release(self, watermark: int, out: ShardOut, later: Later, cause: str | None = None) -> None:
        """Close the bars up to `watermark` and release every candle it covers (live timeouts)."""
        if self.state.sentiment is not None:
            self._close_bars(watermark, later)
        grace, waiting = self.config.grace_ms, self.state.pending
        ready = [p for p in waiting if p.close_time + grace <= watermark]
        if not ready:
            return
        self.state.pending = [p for p in waiting if p.close_time + grace > watermark]
        ready.sort(key=lambda p: (p.close_time, p.interval))
        for pending in ready:
            self._emit_features(pending, cause, watermark, None, out)

    def _bar_block(self, ends: np.ndarray, vals: np.ndarray) -> ColumnBlock:
        return ColumnBlock(
            {"bar_end": ends},
            {"symbol": self.symbol, "step": self.config.step_name},
            vals,
            self._sentiment.columns[1:],
        )

    def _emit_features(
        self, pending: PendingCandle, cause: str | None, known: int, as_of: int | None, out: ShardOut
    ) -> None:
        """The candle's features row, joined with the bar ending at its close_time as the ring
        held it when the last closed bar was `as_of` (None: now), to the table and the model."""
        state = self.state
        ohlc = pending.ohlc
        if ohlc is not None:  # not a `features` column: the trading stage needs the candle's range
            row: dict[str, Any] = {
                "symbol": state.symbol,
                "interval": pending.interval,
                "close_time": pending.close_time,
                "close": pending.close,
                "open": ohlc[0],
                "high": ohlc[1],
                "low": ohlc[2],
            }
        else:
            row = {
                "symbol": state.symbol,
                "interval": pending.interval,
                "close_time": pending.close_time,
                "close": pending.close,
            }
        # NaN (not enough history) is stored as NULL by the store's Arrow insert
        row.update(pending.market)  # MarketState's features: MARKET_FEATURES, in order (the kernel's COLUMNS)
        if self.config.include_sentiment:
            out.join_attempts += 1
            sentiment = state.sentiment
            vals = sentiment.bar_values(pending.close_time, as_of=as_of) if sentiment is not None else None
            if vals is None or sentiment is None:
                status = cause or "no_sentiment"
                row.update(_NO_SENTIMENT)
            else:
                picks = self._picks or self._pick(sentiment)
                cnt_at = picks.cnt_at
                cnt = vals[cnt_at]
                status = cause or ("ok" if cnt > 0 or not vals[picks.imputed_at] else "empty_bar")
                vals[cnt_at] = int(cnt)  # a fresh list (`bar_values`): sent_cnt goes out as an int
                row.update(zip(picks.names, picks.values(vals)))
                if picks.absent:
                    row.update(picks.absent)
            if status != "ok":
                out.join_missing[status] += 1
            row["join_status"] = status
        else:
            row.update(_EXCLUDED)  # the sentiment columns None, join_status "excluded"
        out.tables["features"].append(row)  # what out.append(TableRow(...)) does, without the tuple
        out.model.append(_new(Features, (row, known)))

    def _pick(self, sentiment: SentimentState) -> BarPicks:
        self._picks = _bar_picks(sentiment.columns)  # one lookup per symbol, not per row
        return self._picks


@dataclass(frozen=True)
class BarPicks:
    """Where _SENT_COLUMNS sit in a bar's values (`SentimentState.bar_values`): `values(vals)`
    gives those of `names`, in order; `absent` are the ones this configuration does not
    produce (None); sent_cnt and imputed sit at `cnt_at` and `imputed_at`."""

    names: tuple[str, ...]
    values: Callable[[list[float]], Sequence[float]]
    absent: dict[str, None]
    cnt_at: int
    imputed_at: int


def _as_is(vals: list[float]) -> list[float]:
    return vals


@functools.cache
def _bar_picks(columns: tuple[str, ...]) -> BarPicks:
    index = {name: i for i, name in enumerate(columns[1:])}
    names = tuple(name for name in _SENT_COLUMNS if name in index)
    pick = operator.itemgetter(*(index[name] for name in names))
    values: Callable[[list[float]], Sequence[float]] = pick if len(names) > 1 else (lambda vals: (pick(vals),))
    if names == columns[1 : len(names) + 1]:  # the default columns: the values' first ones, in order
        values = _as_is  # zip(names, vals) stops at the last name: no pick needed
    return BarPicks(
        names, values, dict.fromkeys(n for n in _SENT_COLUMNS if n not in index), index["sent_cnt"], index["imputed"]
    )
