"""The trading engine: strategy + paper broker + portfolio + guards, one candle time at a time.

Pure and deterministic: the same steps and controls in the same order give the same
records. `step(T, bars)` takes every bar of candle time T (sorted by symbol) and runs:

1. day rollover (the daily loss guard clears on a new day; the day's starting equity is set)
2. fills at the open: each symbol's pending market order fills at this bar's open moved
   by the paper slippage; an entry worse than its reference (the decision candle's close)
   by more than RISK_MAX_SLIPPAGE_BPS is refused
3. intrabar exits: stops and take-profits against this bar's low/high
4. marks at the close
5. decisions on this bar's prediction: signal exits and timeouts, then entries (each entry
   through every guard, in symbol order; a refusal is recorded, never partially applied)
6. equity rows (portfolio, and each symbol holding or just closing a position)

Guards are evaluated after every fill and at the close (steps 2-4). Controls (halt,
resume, flatten, reset_drawdown) apply between steps (`apply_control`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from dataflows.trading import broker, strategy
from dataflows.trading.config import TradingConfig
from dataflows.trading.guards import HALTED, OK, TRIPPED, Guards, day_of
from dataflows.trading.items import (
    EquityRecord,
    FillRecord,
    OrderRecord,
    PositionRecord,
    RiskRecord,
    TradeBar,
    TradeControl,
)
from dataflows.trading.portfolio import Portfolio, Position
from dataflows.trading.sizing import TradeStats, entry_notional

NAN = math.nan
_CONTROL_MEMORY = 1_000  # control ids remembered (duplicates arrive through every Kafka partition)


@dataclass
class PendingOrder:
    symbol: str
    intent: str  # entry | exit
    side: int  # entries: the position side (+1 long, -1 short); exits: the closed position's side
    reason: str
    decision_time: int
    reference: float
    notional: float
    atr: float
    model_version: str
    prob: float

    @property
    def buy(self) -> bool:
        return (self.side > 0) == (self.intent == "entry")


@dataclass
class EngineState:
    portfolio: Portfolio
    guards: Guards
    pending: dict[str, PendingOrder] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # bars per symbol (warm-up)
    stats: TradeStats = field(default_factory=TradeStats)
    clock: int = 0  # the newest candle time processed
    controls_seen: list[str] = field(default_factory=list)


@dataclass
class TradingOut:
    """One activation's records, by table, and counts for the metrics."""

    orders: list[OrderRecord] = field(default_factory=list)
    fills: list[FillRecord] = field(default_factory=list)
    positions: list[PositionRecord] = field(default_factory=list)
    equity: list[EquityRecord] = field(default_factory=list)
    risk: list[RiskRecord] = field(default_factory=list)
    fill_counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (side, reason)
    refusals: Counter[str] = field(default_factory=Counter)  # cause
    trips: Counter[str] = field(default_factory=Counter)  # guard
    fees: float = 0.0
    late: int = 0

    def __bool__(self) -> bool:
        return bool(self.orders or self.fills or self.positions or self.equity or self.risk)


@dataclass
class _Book:
    """What entries in one step's decisions share: the close's equity, the pending entries
    (count, cash they reserve); kept up to date as entries are added."""

    equity: float
    entries: int
    reserved: float

    @classmethod
    def of(cls, engine: Engine) -> _Book:
        pending = [o for o in engine.state.pending.values() if o.intent == "entry"]
        reserved = sum(o.notional * (1.0 + engine.cfg.fee_taker) for o in pending if o.side > 0)
        return cls(engine.state.portfolio.equity(), len(pending), reserved)


def new_state(cfg: TradingConfig) -> EngineState:
    return EngineState(Portfolio(cfg.starting_equity), Guards(peak_equity=cfg.starting_equity))


class Engine:
    def __init__(self, cfg: TradingConfig, state: EngineState | None = None) -> None:
        self.cfg = cfg
        self.state = state or new_state(cfg)

    # --- public ----------------------------------------------------------------------------
    def step(self, t: int, bars: list[TradeBar], out: TradingOut) -> None:
        """Candle time `t`: every bar closing at `t`, sorted by symbol."""
        # Most bars of a step are flat symbols with no order and no entry signal: the loops below
        # skip them before any call (a replay's cost, docs/benchmarks.md); the records are the
        # same as when every bar goes through every step.
        cfg, st, pf = self.cfg, self.state, self.state.portfolio
        self._roll_day(t, out)
        touched: set[str] = set()
        open_time = t - cfg.interval_ms
        pending, positions = st.pending, pf.positions
        if pending:
            for bar in bars:  # 2. fills at the open
                if bar.symbol in pending:
                    touched.add(bar.symbol)
                    self._fill_market(pending.pop(bar.symbol), bar, open_time, out)
        if positions:
            for bar in bars:  # 3. intrabar stops and targets
                pos = positions.get(bar.symbol)
                if pos is not None:
                    touched.add(bar.symbol)
                    self._intrabar(pos, bar, out)
        marks, seen = pf.marks, st.seen
        for bar in bars:  # 4. marks at the close
            symbol = bar.symbol
            marks[symbol] = bar.close
            seen[symbol] = seen.get(symbol, 0) + 1
        self._evaluate(t, out, "close")
        if st.guards.drawdown.active and cfg.drawdown_flatten:
            self._flatten(t, "drawdown", out)
        book = _Book.of(self)
        entry, short = cfg.entry, (1.0 - cfg.entry if cfg.allow_short else -math.inf)
        for bar in bars:  # 5. decisions (a flat symbol without an entry signal has none to take)
            symbol = bar.symbol
            if symbol in pending or (symbol not in positions and short < bar.prob < entry):
                continue
            self._decide(bar, out, book)
        st.clock = max(st.clock, t)
        self._equity_rows(t, touched, out)

    def late_bar(self, bar: TradeBar, out: TradingOut) -> None:
        """A bar for a time already processed: it only updates the mark (no fills, exits or decisions)."""
        st = self.state
        seen = st.seen.get(bar.symbol, 0)
        st.seen[bar.symbol] = seen + 1
        if bar.symbol in st.portfolio.positions:
            st.portfolio.marks[bar.symbol] = bar.close
        else:
            st.portfolio.marks.setdefault(bar.symbol, bar.close)
        if seen >= self.cfg.warmup_candles or bar.symbol in st.portfolio.positions:
            out.late += 1
            self._risk(
                out,
                st.clock,
                "ordering",
                "warning",
                bar.symbol,
                float(bar.close_time),
                float(st.clock),
                "",
                f"candle {bar.close_time} of {bar.symbol} arrived after candle time {st.clock} was processed: "
                "used for the mark only (no fill, exit or decision)",
            )

    def apply_control(self, control: TradeControl, out: TradingOut) -> bool:
        """Apply an admin command now (after candle time `clock`); False for a duplicate id."""
        st = self.state
        if control.id in st.controls_seen:
            return False
        st.controls_seen.append(control.id)
        del st.controls_seen[:-_CONTROL_MEMORY]
        at = max(control.at, st.clock)  # effective time: a late control applies at the current position
        g = st.guards
        details = {
            "id": control.id,
            "command": control.command,
            "at": control.at,
            "effective_at": at,
            "by": control.by,
            "reason": control.reason,
        }
        why = f"{control.command} by {control.by or 'admin'}" + (f": {control.reason}" if control.reason else "")
        if control.command == "halt":
            g.kill_switch.trip(HALTED, why, at)
            self._cancel_entries(at, "kill_switch", out)
            guard, state = "kill_switch", HALTED
        elif control.command == "resume":
            g.kill_switch.clear()
            guard, state = "kill_switch", OK
        elif control.command == "flatten":
            self._flatten(at, "flatten", out)
            guard, state = "kill_switch", g.kill_switch.state
        else:  # reset_drawdown
            g.drawdown.clear()
            g.peak_equity = st.portfolio.equity()
            guard, state = "drawdown", OK
        self._risk(out, at, guard, "control", "", NAN, NAN, state, why, details)
        return True

    # --- steps ---------------------------------------------------------------------------------
    def _roll_day(self, t: int, out: TradingOut) -> None:
        g = self.state.guards
        day = day_of(t, self.cfg.day_timezone)
        if day == g.day:
            return
        g.day = day
        g.day_start_equity = self.state.portfolio.equity()
        if g.daily_loss.active:
            g.daily_loss.clear()
            self._risk(out, t, "daily_loss", "clear", "", 0.0, self.cfg.daily_loss_cap, OK, f"new day {day}")

    def _fill_market(self, order: PendingOrder, bar: TradeBar, fill_time: int, out: TradingOut) -> None:
        cfg, pf = self.cfg, self.state.portfolio
        price = broker.slipped(bar.open, order.buy, cfg.slippage_bps)
        slip = broker.slippage_vs_reference(price, order.reference, order.buy)
        rate = broker.fee_rate("market", cfg)
        if order.intent == "entry":
            if slip > cfg.max_slippage_bps:
                self._order(order, "refused", "slippage", fill_time, out, qty=0.0)
                self._refusal(
                    out,
                    fill_time,
                    "slippage",
                    order.symbol,
                    slip,
                    cfg.max_slippage_bps,
                    f"fill {price:.10g} is {slip:.1f} bps worse than the reference {order.reference:.10g} "
                    f"(RISK_MAX_SLIPPAGE_BPS={cfg.max_slippage_bps:g})",
                )
                return
            qty = order.notional / price
            fee = order.notional * rate
            stop, target = strategy.protective_levels(order.side, price, order.atr, cfg)
            pos = Position(
                order.symbol,
                order.side,
                qty,
                price,
                fill_time,
                order.decision_time,
                stop,
                target,
                order.model_version,
                order.prob,
                fee,
            )
            pf.open(pos, fee)
            self._order(order, "filled", "", fill_time, out, qty=qty)
            self._fill(order, fill_time, "buy" if order.buy else "sell", qty, price, rate, fee, slip, pos, 0.0, out)
            out.positions.append(self._position_record(pos, fill_time))
        else:
            held = pf.positions.get(order.symbol)
            if held is None:  # closed by a stop/target meanwhile: nothing left to exit
                self._order(order, "cancelled", "position closed", fill_time, out, qty=0.0)
                return
            if slip > cfg.max_slippage_bps:  # exits are never refused: a guard must not keep risk on
                self._risk(
                    out,
                    fill_time,
                    "slippage",
                    "warning",
                    order.symbol,
                    slip,
                    cfg.max_slippage_bps,
                    OK,
                    f"exit filled {slip:.1f} bps worse than its reference (exits are never refused)",
                )
            self._order(order, "filled", "", fill_time, out, qty=held.qty)
            self._close(held, order, fill_time, price, order.reference, rate, "market", out)
        self._evaluate(fill_time, out, "fill")

    def _intrabar(self, pos: Position, bar: TradeBar, out: TradingOut) -> None:
        cfg = self.cfg
        hit = strategy.intrabar_exit(
            pos.side,
            pos.stop,
            pos.target,
            bar.open,
            bar.high,
            bar.low,
            opened_at_this_open=pos.opened_at == bar.close_time - cfg.interval_ms,
        )
        if hit is None:
            return
        reason, level_price = hit
        buy = pos.side < 0
        if reason == "stop":
            order_type, reference = "stop", pos.stop
            price = broker.slipped(level_price, buy, cfg.slippage_bps)
        else:
            order_type, reference, price = "limit", pos.target, level_price
        rate = broker.fee_rate(order_type, cfg)
        order = PendingOrder(
            pos.symbol,
            "exit",
            pos.side,
            reason,
            bar.close_time,
            reference,
            pos.qty * reference,
            NAN,
            pos.model_version,
            pos.prob,
        )
        self._order(order, "filled", "", bar.close_time, out, qty=pos.qty, order_type=order_type)
        self._close(pos, order, bar.close_time, price, reference, rate, order_type, out)
        self._evaluate(bar.close_time, out, "fill")

    def _close(
        self,
        pos: Position,
        order: PendingOrder,
        fill_time: int,
        price: float,
        reference: float,
        rate: float,
        order_type: str,
        out: TradingOut,
    ) -> None:
        pf = self.state.portfolio
        buy = pos.side < 0
        fee = pos.qty * price * rate
        _, pnl = pf.close(pos.symbol, price, fee)
        self.state.stats.add(pnl - pos.entry_fee - fee)
        slip = broker.slippage_vs_reference(price, reference, buy)
        side = "buy" if buy else "sell"
        self._fill(order, fill_time, side, pos.qty, price, rate, fee, slip, pos, pnl, out, order_type=order_type)
        record = self._position_record(pos, fill_time)
        out.positions.append(
            record._replace(
                status="closed",
                closed_at=fill_time,
                exit_price=price,
                exit_reason=order.reason,
                realized_pnl=pnl,
                fees=pos.entry_fee + fee,
            )
        )

    def _decide(self, bar: TradeBar, out: TradingOut, book: _Book) -> None:
        cfg, st = self.cfg, self.state
        symbol = bar.symbol
        if symbol in st.pending:
            return
        signal_ok = cfg.trade_baseline or bar.model_version != "baseline"
        pos = st.portfolio.positions.get(symbol)
        if pos is not None:
            if signal_ok and strategy.signal_exit(pos.side, bar.prob, cfg):
                reason = "exit"
            elif strategy.timed_out(bar.close_time, pos.opened_at, cfg):
                reason = "timeout"
            else:
                return
            self._new_exit(pos, bar.close_time, reason, bar.close, bar.model_version, bar.prob, out)
            return
        if not signal_ok or st.seen.get(symbol, 0) <= cfg.warmup_candles:
            return
        side = strategy.entry_side(bar.prob, cfg)
        if side:
            self._new_entry(bar, side, out, book)

    def _new_entry(self, bar: TradeBar, side: int, out: TradingOut, book: _Book) -> None:
        cfg, st, pf = self.cfg, self.state, self.state.portfolio
        equity = book.equity  # decisions move no price and no cash: the close's equity
        p_win = bar.prob if side > 0 else 1.0 - bar.prob
        notional = entry_notional(cfg, p_win, equity, st.stats)
        n_entries, reserved = book.entries, book.reserved
        limit_value: float
        blocking = st.guards.blocking()
        if blocking is not None:
            cause, value, limit_value = blocking, 1.0, 0.0
            detail = getattr(st.guards, blocking).reason
        elif (cfg.atr_stop is not None or cfg.atr_take_profit is not None) and not (bar.atr > 0):
            cause, value, limit_value = "no_atr", bar.atr, 0.0
            detail = "ATR 14 is not known yet for this candle: no stop or target could be set"
        elif notional <= 0:
            cause, value, limit_value = "sizing", notional, 0.0
            detail = f"Kelly sizing found no edge at p={bar.prob:.4f}"
        elif len(pf.positions) + n_entries >= cfg.max_concurrent:
            cause, value, limit_value = (
                "concurrency",
                float(len(pf.positions) + n_entries),
                cfg.max_concurrent,
            )
            detail = f"{int(value)} positions open or pending (RISK_MAX_CONCURRENT_POSITIONS={cfg.max_concurrent})"
        elif pf.exposure(bar.symbol) + notional > cfg.max_symbol_exposure * equity:
            cause = "symbol_exposure"
            value = (pf.exposure(bar.symbol) + notional) / equity if equity > 0 else math.inf
            limit_value = cfg.max_symbol_exposure
            detail = f"{value:.4f} of equity in {bar.symbol} (RISK_MAX_SYMBOL_EXPOSURE={cfg.max_symbol_exposure:g})"
        elif side > 0 and notional * (1.0 + cfg.fee_taker) > pf.cash - reserved:
            cause, value, limit_value = "cash", notional, pf.cash - reserved
            detail = f"needs {notional:.2f} + fee, {pf.cash - reserved:.2f} cash is free"
        else:
            order = PendingOrder(
                bar.symbol,
                "entry",
                side,
                "entry",
                bar.close_time,
                bar.close,
                notional,
                bar.atr,
                bar.model_version,
                bar.prob,
            )
            st.pending[bar.symbol] = order
            book.entries += 1
            if side > 0:
                book.reserved += notional * (1.0 + cfg.fee_taker)
            self._order(order, "pending", "", bar.close_time, out, qty=0.0)
            return
        # refused before it was placed: no order, a risk_events row (and a counted cause)
        self._refusal(out, bar.close_time, cause, bar.symbol, value, limit_value, detail)

    def _new_exit(
        self, pos: Position, t: int, reason: str, reference: float, version: str, prob: float, out: TradingOut
    ) -> None:
        order = PendingOrder(
            pos.symbol, "exit", pos.side, reason, t, reference, pos.qty * reference, NAN, version, prob
        )
        self.state.pending[pos.symbol] = order
        self._order(order, "pending", "", t, out, qty=pos.qty)

    def _flatten(self, t: int, why: str, out: TradingOut) -> None:
        st = self.state
        self._cancel_entries(t, why, out)
        for symbol in sorted(st.portfolio.positions):
            if symbol in st.pending:
                continue  # an exit is already on its way
            pos = st.portfolio.positions[symbol]
            self._new_exit(pos, t, "flatten", st.portfolio.marks[symbol], pos.model_version, pos.prob, out)

    def _cancel_entries(self, t: int, cause: str, out: TradingOut) -> None:
        st = self.state
        for symbol in sorted(s for s, o in st.pending.items() if o.intent == "entry"):
            self._order(st.pending.pop(symbol), "cancelled", cause, t, out, qty=0.0)

    # --- guards --------------------------------------------------------------------------------
    def _evaluate(self, t: int, out: TradingOut, at: str) -> None:
        cfg, g = self.cfg, self.state.guards
        equity = self.state.portfolio.equity()
        g.peak_equity = max(g.peak_equity, equity)
        drawdown = 1.0 - equity / g.peak_equity if g.peak_equity > 0 else 0.0
        if not g.drawdown.active and drawdown >= cfg.max_drawdown:
            reason = (
                f"drawdown {drawdown:.4f} from the peak {g.peak_equity:.2f} reached RISK_MAX_DRAWDOWN={cfg.max_drawdown:g} "
                f"at a {at}: entries halted until an admin resets it"
            )
            g.drawdown.trip(TRIPPED, reason, t)
            self._risk(out, t, "drawdown", "trip", "", drawdown, cfg.max_drawdown, TRIPPED, reason)
            self._cancel_entries(t, "drawdown", out)
        base = g.day_start_equity
        day_pnl = equity - base
        if not g.daily_loss.active and base > 0 and day_pnl <= -cfg.daily_loss_cap * base:
            reason = (
                f"day {g.day} PnL {day_pnl:.2f} ({day_pnl / base:.4f} of {base:.2f}) reached "
                f"RISK_DAILY_LOSS_CAP={cfg.daily_loss_cap:g} at a {at}: no entries until the next day"
            )
            g.daily_loss.trip(TRIPPED, reason, t)
            self._risk(out, t, "daily_loss", "trip", "", -day_pnl / base, cfg.daily_loss_cap, TRIPPED, reason)
            self._cancel_entries(t, "daily_loss", out)

    # --- records -------------------------------------------------------------------------------
    def _order(
        self,
        order: PendingOrder,
        status: str,
        cause: str,
        t: int,
        out: TradingOut,
        *,
        qty: float,
        order_type: str = "market",
    ) -> None:
        out.orders.append(
            OrderRecord(
                self.cfg.account,
                order.symbol,
                order.decision_time,
                order.intent,
                "buy" if order.buy else "sell",
                order_type,
                order.reason,
                status,
                cause,
                order.notional,
                qty,
                order.reference,
                order.model_version,
                order.prob,
                t,
            )
        )

    def _fill(
        self,
        order: PendingOrder,
        t: int,
        side: str,
        qty: float,
        price: float,
        rate: float,
        fee: float,
        slip: float,
        pos: Position,
        pnl: float,
        out: TradingOut,
        *,
        order_type: str = "market",
    ) -> None:
        out.fills.append(
            FillRecord(
                self.cfg.account,
                order.symbol,
                t,
                order.intent,
                side,
                qty,
                price,
                order.reference,
                qty * price,
                fee,
                rate,
                broker.liquidity(order_type, self.cfg),
                slip,
                order.reason,
                order.decision_time,
                order.model_version,
                order.prob,
                pos.opened_at,
                pnl,
            )
        )
        out.fill_counts[(side, order.reason)] += 1
        out.fees += fee

    def _position_record(self, pos: Position, t: int) -> PositionRecord:
        return PositionRecord(
            self.cfg.account,
            pos.symbol,
            pos.opened_at,
            "open",
            pos.side_name,
            pos.qty,
            pos.entry_price,
            pos.entry_decision_time,
            pos.stop,
            pos.target,
            pos.model_version,
            pos.prob,
            0,
            NAN,
            "",
            0.0,
            pos.entry_fee,
            t,
        )

    def _refusal(
        self, out: TradingOut, t: int, cause: str, symbol: str, value: float, limit: float, detail: str
    ) -> None:
        out.refusals[cause] += 1
        state = getattr(self.state.guards, cause).state if cause in ("kill_switch", "drawdown", "daily_loss") else OK
        self._risk(out, t, cause, "refusal", symbol, value, limit, state, f"entry refused: {detail}")

    def _risk(
        self,
        out: TradingOut,
        t: int,
        guard: str,
        kind: str,
        symbol: str,
        value: float,
        limit: float,
        state: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        if kind == "trip":
            out.trips[guard] += 1
        text = orjson.dumps(details).decode() if details else "{}"
        out.risk.append(
            RiskRecord(
                self.cfg.account,
                t,
                guard,
                kind,
                symbol,
                float(value),
                float(limit),
                state,
                reason,
                text,
                f"{kind}|{symbol}|{value!r}|{(details or {}).get('id', '')}",
            )
        )

    def _equity_rows(self, t: int, touched: set[str], out: TradingOut) -> None:
        cfg, pf, g = self.cfg, self.state.portfolio, self.state.guards
        equity = pf.equity()
        drawdown = 1.0 - equity / g.peak_equity if g.peak_equity > 0 else 0.0
        out.equity.append(
            EquityRecord(
                cfg.account,
                "",
                t,
                pf.cash,
                equity,
                0.0,
                0.0,
                pf.gross_exposure(),
                pf.total_unrealized(),
                pf.realized,
                pf.fees,
                len(pf.positions),
                g.peak_equity,
                drawdown,
                g.day_start_equity,
                equity - g.day_start_equity,
                int(g.kill_switch.active),
                int(g.drawdown.active),
                int(g.daily_loss.active),
            )
        )
        for symbol in sorted(touched | pf.positions.keys()):
            pos = pf.positions.get(symbol)
            unrealized = pf.unrealized(symbol)
            realized, fees = pf.symbol_realized.get(symbol, 0.0), pf.symbol_fees.get(symbol, 0.0)
            out.equity.append(
                EquityRecord(
                    cfg.account,
                    symbol,
                    t,
                    0.0,
                    realized + unrealized - fees,
                    0.0 if pos is None else pos.side * pos.qty,
                    pf.marks.get(symbol, NAN),
                    pf.exposure(symbol),
                    unrealized,
                    realized,
                    fees,
                    int(pos is not None),
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    0,
                    0,
                    0,
                )
            )


def candle_steps(
    bars: Sequence[TradeBar], controls: Iterable[TradeControl]
) -> Iterator[tuple[list[TradeControl], int | None, Sequence[TradeBar]]]:
    """Bars already in event-time order, one candle time at a time, each with the controls
    due before it (`at` < its time), as the live stage applies them: (controls, time, bars).
    The controls after the last candle come last, with time None and no bars."""
    pending = sorted(controls, key=lambda c: (c.at, c.id))
    i, n = 0, len(bars)
    while i < n:
        t = bars[i].close_time
        j = i
        while j < n and bars[j].close_time == t:
            j += 1
        k = 0
        while k < len(pending) and pending[k].at < t:
            k += 1
        yield pending[:k], t, bars[i:j]
        del pending[:k]
        i = j
    yield pending, None, ()


def replay_sorted(
    cfg: TradingConfig, bars: list[TradeBar], controls: Sequence[TradeControl] = (), out: TradingOut | None = None
) -> TradingOut:
    """The engine over bars already in event-time order (a backtest in memory): each candle time
    in turn, each control before the first candle time after it."""
    engine, out = Engine(cfg), out or TradingOut()
    for due, t, group in candle_steps(bars, controls):
        for control in due:
            engine.apply_control(control, out)
        if t is not None:
            engine.step(t, sorted(group, key=lambda b: b.symbol), out)
    return out
