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

import functools
import operator
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from bytewax.operators import StatefulBatchLogic

from dataflows.decode import SymbolInput, rejected_row
from dataflows.market_state import CandleRejected, MarketConfig, MarketState
from dataflows.outputs import Out
from dataflows.sentiment_state import SentimentConfig, SentimentState
from dataflows.snapshot import freeze, thaw
from dataflows.tick_batches import SymbolTicks
from tickcast import metrics
from tickcast.features import OPTIONAL_SENTIMENT_FEATURES, SENTIMENT_FEATURES
from tickcast.records import INTERVAL_MS, Rejection
from tickcast.store import ColumnBlock

_SENT_COLUMNS = SENTIMENT_FEATURES + OPTIONAL_SENTIMENT_FEATURES
_STATUS_REASON = {1: "duplicate", 2: "late"}


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


# Side work of an activation, as data (it is part of the snapshot until done):
#   ("ticks", symbol, SymbolTicks, status)    store the accepted ticks, refuse the others
#   ("bars", symbol, bar_ends, bar_values)    store the closed bars, publish their events
#   ("view", symbol)                          publish the symbol's live sentiment view
Later = list[tuple[Any, ...]]


@dataclass
class ShardState:
    symbols: dict[str, SymbolState]
    later: Later


class ShardLogic(StatefulBatchLogic[list[tuple[str, SymbolInput]], tuple[Any, ...], ShardState]):
    """The symbols of one shard; each value is one decode activation's (symbol, input) pairs."""

    def __init__(self, config: SymbolConfig, state: ShardState | None) -> None:
        self.config = config
        shard = thaw(state) or ShardState({}, [])
        if isinstance(shard, dict):  # a recovery store written before side work was deferred
            shard = ShardState(shard, [])
        self.symbols = {name: SymbolLogic(config, st) for name, st in shard.symbols.items()}
        self.later: Later = shard.later

    def on_batch(self, values: list[list[tuple[str, SymbolInput]]]) -> tuple[list[tuple[Any, ...]], bool]:
        out = ShardOut()
        self._side_work(out)  # the previous activation's, against the state it saw
        for pairs in values:
            for symbol, inputs in pairs:
                logic = self.symbols.get(symbol)
                if logic is None:
                    logic = self.symbols[symbol] = SymbolLogic(self.config, SymbolState(symbol=symbol))
                logic.on_input(inputs, out, self.later)
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
        for logic in self.symbols.values():
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
        deadlines = [d for d in (s.deadline() for s in self.symbols.values()) if d is not None]
        return datetime.fromtimestamp(min(deadlines), tz=UTC) if deadlines else None

    def snapshot(self) -> bytes | None:
        state = ShardState({name: s.state for name, s in self.symbols.items()}, self.later)
        return freeze(state, enabled=self.config.recovery)

    def _side_work(self, out: ShardOut) -> None:
        if not self.later:
            return
        later, self.later = self.later, []
        viewed: set[str] = set()
        for kind, symbol, *args in later:
            logic = self.symbols[symbol]
            if kind == "ticks":
                logic.store_ticks(*args, out)
            elif kind == "bars":
                logic.store_bars(*args, out)
            elif symbol not in viewed:  # "view": one per symbol and activation, of its state now
                viewed.add(symbol)
                logic.publish_view(out)
        self._record_lag()

    def _record_lag(self) -> None:
        if self.symbols:
            metrics.FLOW_LAG_MS.set(time.time() * 1000 - max(s.state.watermark for s in self.symbols.values()))


class SymbolLogic:
    """One symbol's step: `on_input` per batch of its records, `on_timeout` for waiting candles."""

    def __init__(self, config: SymbolConfig, state: SymbolState) -> None:
        self.config = config
        self.state = state
        self._labels: list[tuple[str, dict[str, Any]]] = []

    @property
    def symbol(self) -> str:
        return self.state.symbol

    def on_input(self, inputs: SymbolInput, out: ShardOut, later: Later) -> None:
        ticks, candles = inputs.ticks, inputs.candles
        # Only accepted records move the watermark: a replay of the stored rows (which
        # has no rejected record) must release exactly the same candles.
        newest = self.state.watermark
        if ticks is not None:
            newest = max(newest, self._ticks(ticks, later))
        for candle in candles:
            if self._candle(candle, out):
                newest = max(newest, candle["ingest_ts"])
        self.state.watermark = newest
        self._advance(self.state.watermark, out, later)
        # Labels go after the features released in this batch; the model stage orders by
        # event time anyway, this keeps the two in one downstream batch when possible.
        for label in self._labels:
            out.append(label)
        self._labels.clear()
        if ticks and self.config.publish_live:
            later.append(("view", self.symbol))

    def deadline(self) -> float | None:
        """Wall time (s) at which the oldest waiting candle times out; None when none waits."""
        if self.config.timeout_ms is None or not self.state.pending:
            return None
        return min(p.arrived_wall for p in self.state.pending) + self.config.timeout_ms / 1000

    def on_timeout(self, now: float, out: ShardOut, later: Later) -> None:
        deadline = now - self.config.timeout_ms / 1000
        expired = [p for p in self.state.pending if p.arrived_wall <= deadline]
        if expired:
            # Waited long enough in wall-clock time: close the bars as they are.
            forced = max(p.close_time for p in expired) + self.config.grace_ms
            self._advance(max(self.state.watermark, forced), out, later, cause="timeout")

    # --- side work (ShardLogic._side_work) ----------------------------------------------
    def store_ticks(self, ticks: SymbolTicks, status: np.ndarray, out: ShardOut) -> None:
        accepted = status == 0
        n_ok = int(np.count_nonzero(accepted))
        if n_ok:
            stored = ticks.stored(accepted, n_ok)
            out.add_table("sentiment_ticks", stored)
            out.latencies.append((ticks.ingest_ts, ticks.ts, None if n_ok == len(ticks) else accepted))
            out.providers.append(ticks.providers(stored))
        if n_ok < len(ticks):
            self._refused(ticks, status, out)

    def store_bars(self, ends: np.ndarray, vals: np.ndarray, out: ShardOut) -> None:
        sentiment = self.state.sentiment
        out.add_table("sentiment_bars", self._bar_block(ends, vals))  # NaN -> NULL in the store
        if self.config.publish_live:
            for bar_end, row in zip(ends.tolist(), vals.tolist(), strict=True):
                data = {"kind": "bar", "symbol": self.symbol, "step": self.config.step_name}
                data.update(sentiment.row(bar_end, row))
                out.append(("event", "sentiment", data, self.symbol, bar_end))

    def publish_view(self, out: ShardOut) -> None:
        if self.state.sentiment is not None:
            latest = self.state.sentiment.latest(self.state.watermark)
            out.append(
                (
                    "event",
                    "sentiment",
                    {"kind": "tick", "symbol": self.symbol, **latest},
                    self.symbol,
                    self.state.watermark,
                )
            )

    # --- ticks --------------------------------------------------------------------------
    def _ticks(self, ticks: SymbolTicks, later: Later) -> int:
        """Add ticks; returns the newest ingest_ts among the accepted ones (0 if none)."""
        if self.state.sentiment is None:
            self.state.sentiment = SentimentState(self.config.sentiment)
        # decode checked every field, and SymbolTicks has the engine's dtypes: no TickBatch
        accepted_before = self.state.sentiment.n_accepted
        status = self.state.sentiment.add_columns(
            ticks.ts, ticks.ingest_ts, ticks.score, ticks.polarity, ticks.weight, ticks.id_hash
        )
        later.append(("ticks", self.symbol, ticks, status))
        n_ok = self.state.sentiment.n_accepted - accepted_before
        if n_ok == len(ticks):  # for a few ticks a Python max is cheaper than numpy's reduction
            return max(ticks.ingest_ts.tolist()) if n_ok < 16 else int(ticks.ingest_ts.max())
        return int(ticks.ingest_ts[status == 0].max()) if n_ok else 0

    def _refused(self, ticks: SymbolTicks, status: Any, out: Out) -> None:
        max_latency = self.config.sentiment.max_latency_ms
        refused = (status != 0).nonzero()[0]
        for tick, code in zip(ticks.records(refused), status[refused].tolist(), strict=True):
            reason = _STATUS_REASON.get(code, f"status {code}")
            metrics.SENTIMENT_INGEST_ERRORS.labels(reason).inc()
            detail = (
                f"duplicate tick id {tick['id']!r} within {self.config.sentiment.dedup_window_ms // 1000}s"
                if code == 1
                else f"late tick: ingest_ts - ts = {tick['ingest_ts'] - tick['ts']} ms > {max_latency} ms"
            )
            out.append(("table", "rejected_records", rejected_row(Rejection.for_record("sentiment", detail, tick))))

    # --- candles ------------------------------------------------------------------------
    def _candle(self, candle: dict[str, Any], out: ShardOut) -> bool:
        """Handle one candle; True when it was accepted (new and in order)."""
        interval = candle["interval"]
        market = self.state.markets.get(interval)
        if market is None:
            market = self.state.markets[interval] = MarketState(
                MarketConfig(horizon=self.config.horizon, interval_ms=INTERVAL_MS[interval])
            )
        try:
            feats, labels = market.add_candle(
                candle["open_time"],
                candle["close_time"],
                candle["open"],
                candle["high"],
                candle["low"],
                candle["close"],
                candle["volume"],
            )
        except CandleRejected as exc:
            out.append(("table", "rejected_records", rejected_row(Rejection.for_record("market", str(exc), candle))))
            return False
        if feats is None:  # the same candle again (at-least-once delivery): already handled
            return False
        out.candles[interval] += 1
        out.append(("table", "candles", candle))
        for label in labels:
            row = {"symbol": self.symbol, "interval": interval, **label}
            out.append(("table", "labels", row))
            self._labels.append(("label", row))
        if len(self.state.pending) >= self.config.max_pending_candles:
            self.state.pending.pop(0)  # bounded state; counted as a miss when it would have been released
            out.join_missing["overflow"] += 1
        self.state.pending.append(PendingCandle(candle["close_time"], interval, candle["close"], feats, time.time()))
        return True

    # --- the join -----------------------------------------------------------------------
    def _advance(self, watermark: int, out: ShardOut, later: Later, cause: str | None = None) -> None:
        if self.state.sentiment is not None:
            ends, vals = self.state.sentiment.advance_columns(watermark)
            if ends.size:
                later.append(("bars", self.symbol, ends, vals))
        grace, waiting = self.config.grace_ms, self.state.pending
        ready = [p for p in waiting if p.close_time + grace <= watermark]
        if not ready:
            return
        self.state.pending = (
            [p for p in waiting if p.close_time + grace > watermark] if len(ready) < len(waiting) else []
        )
        if len(ready) > 1:
            ready.sort(key=lambda p: (p.close_time, p.interval))
        for pending in ready:
            row = self._features(pending, cause, out)
            out.append(("table", "features", row))
            out.append(("features", row))

    def _bar_block(self, ends: np.ndarray, vals: np.ndarray) -> ColumnBlock:
        return ColumnBlock(
            {"bar_end": ends},
            {"symbol": self.symbol, "step": self.config.step_name},
            vals,
            self.state.sentiment.columns[1:],
        )

    def _features(self, pending: PendingCandle, cause: str | None, out: ShardOut) -> dict[str, Any]:
        row: dict[str, Any] = {
            "symbol": self.symbol,
            "interval": pending.interval,
            "close_time": pending.close_time,
            "close": pending.close,
        }
        # NaN (not enough history) is stored as NULL by the store's Arrow insert
        row.update(pending.market)  # MarketState's features: MARKET_FEATURES, in order (the kernel's COLUMNS)
        if not self.config.include_sentiment:
            row.update(dict.fromkeys(_SENT_COLUMNS))
            row["join_status"] = "excluded"
            return row
        out.join_attempts += 1
        sentiment = self.state.sentiment
        vals = sentiment.bar_values(pending.close_time) if sentiment is not None else None
        if vals is None:
            status = cause or "no_sentiment"
            row.update(dict.fromkeys(_SENT_COLUMNS))
        else:
            picks = _bar_picks(sentiment.columns)
            status = cause or ("ok" if vals[picks.cnt_at] > 0 or not vals[picks.imputed_at] else "empty_bar")
            row.update(zip(picks.names, picks.values(vals)))
            row.update(picks.absent)
            row["sent_cnt"] = int(vals[picks.cnt_at])
        if status != "ok":
            out.join_missing[status] += 1
        row["join_status"] = status
        return row


@dataclass(frozen=True)
class BarPicks:
    """Where _SENT_COLUMNS sit in a bar's values (`SentimentState.bar_values`): `values(vals)`
    gives those of `names`, in order; `absent` are the ones this configuration does not
    produce (None); sent_cnt and imputed sit at `cnt_at` and `imputed_at`."""

    names: tuple[str, ...]
    values: Callable[[list[float]], tuple[float, ...]]
    absent: dict[str, None]
    cnt_at: int
    imputed_at: int


@functools.cache
def _bar_picks(columns: tuple[str, ...]) -> BarPicks:
    index = {name: i for i, name in enumerate(columns[1:])}
    names = tuple(name for name in _SENT_COLUMNS if name in index)
    pick = operator.itemgetter(*(index[name] for name in names))
    values = pick if len(names) > 1 else (lambda vals: (pick(vals),))
    return BarPicks(
        names, values, dict.fromkeys(n for n in _SENT_COLUMNS if n not in index), index["sent_cnt"], index["imputed"]
    )
