"""The trading stage: one Bytewax key ("trading") after the model stage.

One key keeps the portfolio-wide guards exact: every symbol's bars, from every shard and
worker, meet in one place, in event-time order (`ordering.EventTimeOrder`), and one
`Engine` applies them. Its inputs (values of `on_batch`):

    TradeBars([TradeBar, ...])          from the model stage, one list per activation
    TradingControl({record})            admin commands from the decode step (inputs)

and what it hands on (`dataflows/items.py` types, `dataflows/outputs.py` shapes):

    Rows("orders" | "fills" | "positions" | "equity" | "risk_events", Pieces[pyarrow.Table])
    Events([LiveEvent("trading", data, symbol, ts), ...])  live runs only
    ExchangeOrders([OrderRecord, ...])                      testnet/live: to the exchange sink

Live, a heartbeat (INFERENCE_AUTO_LOOP_*) every interval of wall clock publishes the
portfolio and the guards' state and the feed's age, so an operator sees them through a
feed gap; it writes no row (a replay has no heartbeat and must give the same rows).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from bytewax.operators import StatefulBatchLogic

from dataflows.items import Events, ExchangeOrders, LiveEvent, TableRow, TradeBars
from dataflows.outputs import Out
from dataflows.snapshot import freeze, thaw
from dataflows.trading import checkpoint
from dataflows.trading.config import TradingConfig
from dataflows.trading.engine import Engine, EngineState, TradingOut, new_state
from dataflows.trading.items import TradeBar, TradeControl
from dataflows.trading.ordering import EventTimeOrder, OrderState
from tickcast import metrics
from tickcast.settings import Settings

log = logging.getLogger(__name__)
TABLES = ("orders", "fills", "positions", "equity", "risk_events")
STREAM = "trading"


@dataclass(frozen=True)
class StageConfig:
    trading: TradingConfig
    idle_ms: int = 7_200_000
    timeout_s: float | None = 20.0  # None: replays (no wall clock)
    max_items: int = 1_000_000
    publish_live: bool = True
    recovery: bool = True
    heartbeat_s: float | None = 10.0  # None: no heartbeat (replays, or INFERENCE_AUTO_LOOP_ENABLED=false)
    exchange: bool = False  # testnet/live mode: also hand new orders on as ("exchange", [OrderRecord, ...])

    @classmethod
    def from_settings(
        cls,
        s: Settings,
        *,
        live: bool,
        publish: bool = True,
        recovery: bool = True,
        account: str | None = None,
        exchange: bool = False,
    ) -> StageConfig:
        return cls(
            trading=TradingConfig.from_settings(s, account=account),
            idle_ms=s.trading_symbol_idle_ms,
            timeout_s=s.TRADING_RELEASE_TIMEOUT_MS / 1000 if live else None,
            max_items=s.TRADING_MAX_BUFFERED,
            publish_live=live and publish,
            recovery=recovery,
            heartbeat_s=s.auto_loop_interval_s if live and s.INFERENCE_AUTO_LOOP_ENABLED else None,
            exchange=exchange and live,
        )


@dataclass
class StageState:
    order: OrderState = field(default_factory=OrderState)
    engine: EngineState | None = None

    @classmethod
    def resumed(cls, engine: EngineState) -> StageState:
        """The stage continuing a book rebuilt from the store (`tickcast.app.backtest.live_book`):
        candle times up to the book's clock count as released and their bars as already traded."""
        return cls(OrderState(released=engine.clock, resumed_at=engine.clock), engine)


def control_from_record(record: dict[str, Any]) -> TradeControl:
    return TradeControl(
        record["id"], record["command"], int(record["at"]), record.get("by", ""), record.get("reason", "")
    )


class TradingLogic(StatefulBatchLogic[Any, tuple[Any, ...], Any]):
    def __init__(self, config: StageConfig, state: Any) -> None:
        self.config = config
        st: StageState = thaw(state) or StageState()
        self.engine = Engine(config.trading, st.engine or new_state(config.trading))
        self.order = EventTimeOrder(
            config.idle_ms,
            timeout_s=config.timeout_s,
            max_items=config.max_items,
            join_ms=config.trading.warmup_candles * config.trading.interval_ms,
            state=st.order,
        )
        self._checkpoints: list[dict[str, Any]] = []  # this activation's `trading_checkpoints` rows
        self._last_step_wall = time.time()
        self._next_beat = time.time()
        self._stale_logged = False
        self._due = bool(self.order.state.buffer or self.order.state.controls)  # live: work left to do

    def snapshot(self) -> bytes | None:
        return freeze(StageState(self.order.state, self.engine.state), enabled=self.config.recovery)

    # --- Bytewax --------------------------------------------------------------------------------
    def on_batch(self, values: list[Any]) -> tuple[list[tuple[Any, ...]], bool]:
        now = time.time()
        result = TradingOut()
        skipped = self.order.state.skipped
        for item in values:
            if item.__class__ is TradeBars:
                for bar in self.order.add_many(item[0], now):  # the late ones
                    self.engine.late_bar(bar, result)
            else:  # TradingControl
                self.order.add_control(control_from_record(item[0]))
        if self.order.state.skipped != skipped:
            log.info(
                "trading: %d re-sent candle(s) up to %d skipped: the stored book was traded to there before the "
                "restart (%d so far)",
                self.order.state.skipped - skipped,
                self.order.state.resumed_at,
                self.order.state.skipped,
            )
        if self.config.timeout_s is not None:
            # Live: trade in the next activation (notify_at = now), which Bytewax runs after the
            # steps downstream of the model stage: the predictions' events go out first.
            self._due = True
            return [], StatefulBatchLogic.RETAIN
        self._run(self.order.release(now), result)
        return self._emit(result), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[tuple[Any, ...]], bool]:
        now = time.time()
        self._due = False
        result = TradingOut()
        self._run(self.order.release(now), result)
        items = self._emit(result)
        if self.config.heartbeat_s is not None and now >= self._next_beat:
            self._next_beat = now + self.config.heartbeat_s
            items.append(Events([self._heartbeat(now)]))
        return items, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[Any, ...]], bool]:
        result = TradingOut()
        self._run(self.order.flush(), result)
        return self._emit(result), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self._due:
            return datetime.now(UTC)
        times = [t for t in (self.order.deadline(), self._beat_due()) if t is not None]
        return datetime.fromtimestamp(min(times), tz=UTC) if times else None

    # --- work -----------------------------------------------------------------------------------
    def _beat_due(self) -> float | None:
        return self._next_beat if self.config.heartbeat_s is not None else None

    def _run(self, releases: list[Any], result: TradingOut) -> None:
        for release in releases:
            if release[0] == "step":
                previous = self.engine.state.clock
                self.engine.step(release[1], release[2], result)
                if checkpoint.due(previous, release[1]):  # the state as text, stored with the rows
                    self._checkpoints.append(checkpoint.row(self.config.trading.account, release[1], self.engine.state))
                self._last_step_wall = time.time()
                self._stale_logged = False
            else:
                self.engine.apply_control(release[1], result)
        metrics.TRADING_BUFFERED.set(self.order.buffered)

    def _emit(self, result: TradingOut) -> list[tuple[Any, ...]]:
        if not result and not result.late and not self._checkpoints:
            return []
        self._record_metrics(result)
        out = Out()
        for row in self._checkpoints:
            out.append(TableRow(checkpoint.TABLE, row))
        self._checkpoints.clear()
        tables: tuple[list[Any], ...] = (result.orders, result.fills, result.positions, result.equity, result.risk)
        for name, records in zip(TABLES, tables, strict=True):
            if records:
                out.add_table(name, _columns(records))
        if self.config.publish_live:
            for kind, records in (("order", result.orders), ("fill", result.fills), ("position", result.positions)):
                for r in records:
                    out.append(LiveEvent(STREAM, {"kind": kind, **r.row()}, r.symbol, _ts(r)))
            for mark in result.equity:
                if mark.symbol == "":
                    out.append(LiveEvent(STREAM, {"kind": "equity", **mark.row()}, None, mark.ts))
            refused: list[Any] = []
            for risk in result.risk:
                if risk.kind == "refusal":  # one event for an activation's refusals (hundreds in a burst)
                    refused.append(risk)
                    continue
                data = {"kind": "risk", **risk.row(), "details": orjson.loads(risk.details)}
                out.append(LiveEvent(STREAM, data, risk.symbol or None, risk.ts))
            if refused:
                data = {
                    "kind": "refusals",
                    "counts": dict(result.refusals),
                    "ts": refused[-1].ts,
                    "latest": [{"symbol": r.symbol, "guard": r.guard, "ts": r.ts} for r in refused[-20:]],
                }
                out.append(LiveEvent(STREAM, data, None, refused[-1].ts))
        if self.config.exchange:
            new = [o for o in result.orders if o.status == "pending"]
            if new:
                out.append(ExchangeOrders(new))
        for risk in result.risk:
            if risk.kind in ("trip", "control") or risk.guard == "ordering":
                log.warning("trading %s %s: %s", risk.guard, risk.kind, risk.reason)
        return out.done()

    def _record_metrics(self, result: TradingOut) -> None:
        account = self.config.trading.account
        for (side, reason), n in result.fill_counts.items():
            metrics.TRADING_FILLS.labels(side, reason).inc(n)
        if result.fees:
            metrics.TRADING_FEES.inc(result.fees)
        for guard, n in result.trips.items():
            metrics.TRADING_GUARD_TRIPS.labels(guard).inc(n)
        for cause, n in result.refusals.items():
            metrics.TRADING_REFUSED_ENTRIES.labels(cause).inc(n)
        if result.late:
            metrics.TRADING_LATE_CANDLES.inc(result.late)
        if result.equity:
            pf, g = self.engine.state.portfolio, self.engine.state.guards
            metrics.TRADING_EQUITY.labels(account).set(pf.equity())
            metrics.TRADING_OPEN_POSITIONS.labels(account).set(len(pf.positions))
            metrics.TRADING_REALIZED_PNL.labels(account).set(pf.realized)
            for name in ("kill_switch", "drawdown", "daily_loss"):
                metrics.TRADING_GUARD_STATE.labels(name).set(int(getattr(g, name).active))

    def _heartbeat(self, now: float) -> LiveEvent:
        st = self.engine.state
        pf, g = st.portfolio, st.guards
        age = now - self._last_step_wall
        metrics.TRADING_FEED_AGE.set(age)
        stale_after = max(3 * self.config.trading.interval_ms / 1000, 2 * (self.config.timeout_s or 0))
        if age > stale_after and not self._stale_logged:
            self._stale_logged = True
            log.warning(
                "trading: no candle processed for %.0f s (last candle time %s); %d open position(s) keep their "
                "last marks, guards stay as they are",
                age,
                st.clock,
                len(pf.positions),
            )
        data = {
            "kind": "heartbeat",
            "account": self.config.trading.account,
            "clock": st.clock,
            "feed_age_s": round(age, 3),
            "stale": age > stale_after,
            "equity": pf.equity() if pf.marks or not pf.positions else None,
            "cash": pf.cash,
            "open_positions": len(pf.positions),
            "buffered": self.order.buffered,
            "pending_controls": len(self.order.state.controls),
            "guards": {
                name: {"state": getattr(g, name).state, "reason": getattr(g, name).reason}
                for name in ("kill_switch", "drawdown", "daily_loss")
            },
        }
        return LiveEvent(STREAM, data, None, st.clock)


def _columns(records: list[Any]) -> pa.Table:
    """One table's records (NamedTuples of one type) as an Arrow table, column by column.

    The same rows as `[r.row() for r in records]`: the store casts the columns to the table's
    schema (epoch ms to DateTime64, ints to floats) as it does for dict rows, and NaN to NULL in
    Nullable columns. Built here, a column costs one C loop; dict rows cost a Python dict per
    row and `Table.from_pylist` in the writer (~12 µs a row: most of what the stage added to a
    replay, docs/benchmarks.md)."""
    names = list(records[0]._fields)
    return pa.Table.from_arrays([pa.array(column) for column in zip(*records, strict=True)], names=names)


def _ts(record: Any) -> int:
    for name in ("fill_time", "updated_at", "ts"):
        value = getattr(record, name, None)
        if value is not None:
            return int(value)
    return 0


def trade_bars(
    rows: list[dict[str, Any]], probs: list[float], version: str, reason: str, interval: str
) -> list[TradeBar]:
    """The model-stage features rows of `interval` that carry their candle's open/high/low, with
    their predictions, as bars (one loop: a live burst brings a row per symbol)."""
    nan = float("nan")
    bars = []
    for row, prob in zip(rows, probs, strict=True):
        if row["interval"] != interval or "open" not in row:
            continue
        atr = row.get("atr_14")
        bars.append(
            TradeBar(
                row["symbol"],
                row["close_time"],
                row["open"],
                row["high"],
                row["low"],
                row["close"],
                nan if atr is None else float(atr),
                prob,
                version,
                reason,
            )
        )
    return bars
