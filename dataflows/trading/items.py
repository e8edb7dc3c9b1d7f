"""Typed items of the trading stage: what it takes in and what it writes.

Inputs (from the model stage and the decode step):

    TradeBar       one candle of the trading interval with its prediction
    TradeControl   an admin command (halt, resume, flatten, reset_drawdown)

Outputs, one record type per table (`.row()` is the table row; timestamps are epoch ms):

    OrderRecord    -> orders        (account, symbol, decision_time, intent)
    FillRecord     -> fills         (account, symbol, fill_time, intent)
    PositionRecord -> positions     (account, symbol, opened_at), versioned by updated_at
    EquityRecord   -> equity        (account, symbol, ts); symbol "" is the portfolio
    RiskRecord     -> risk_events   (account, ts, guard, event_id)

At the stage's boundary they become the flow's tagged tuples (`dataflows/outputs.py`).
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple


class TradeBar(NamedTuple):
    """Candle `close_time` of `symbol` (the trading interval) and the prediction made on it.

    `atr` is the candle's `atr_14` feature: the mean true range over 14 candles divided
    by the close (a fraction of the price, NaN while there is not enough history).
    """

    symbol: str
    close_time: int
    open: float
    high: float
    low: float
    close: float
    atr: float
    prob: float
    model_version: str
    fallback_reason: str = ""


COMMANDS = ("halt", "resume", "flatten", "reset_drawdown")


class TradeControl(NamedTuple):
    """An admin command. `at` is its event time (epoch ms): it applies after every candle
    time <= at and before any later one (see dataflows/trading/ordering.py)."""

    id: str
    command: str
    at: int
    by: str = ""
    reason: str = ""


def event_id(*parts: Any) -> str:
    """A deterministic id from the parts (a replay gives the same id)."""
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


class OrderRecord(NamedTuple):
    account: str
    symbol: str
    decision_time: int
    intent: str  # entry | exit
    side: str  # buy | sell
    order_type: str  # market | stop | limit
    reason: str  # entry | exit | stop | target | timeout | flatten
    status: str  # pending | filled | refused | cancelled
    cause: str  # why refused/cancelled ("" otherwise)
    notional: float  # quote amount asked for (entries), or the position's notional at the reference (exits)
    qty: float  # exits: the quantity to close; entries: 0 until filled
    reference_price: float  # the decision candle's close (market orders) or the stop/target level
    model_version: str
    prob: float
    updated_at: int  # event time of this status (the ReplacingMergeTree version)

    def row(self) -> dict[str, Any]:
        return self._asdict()


class FillRecord(NamedTuple):
    account: str
    symbol: str
    fill_time: int  # the fill candle's open_time (market orders) or close_time (stops, targets)
    intent: str
    side: str
    qty: float
    price: float
    reference_price: float
    notional: float
    fee: float
    fee_rate: float
    liquidity: str  # taker | maker
    slippage_bps: float  # (price - reference) / reference in bps, positive = worse for the trader
    reason: str
    decision_time: int
    model_version: str
    prob: float
    position_id: int  # the position's opened_at
    realized_pnl: float  # exits: qty * (exit - entry) * side, before fees; entries: 0

    def row(self) -> dict[str, Any]:
        return self._asdict()


class PositionRecord(NamedTuple):
    account: str
    symbol: str
    opened_at: int  # the entry fill's time; the position's id
    status: str  # open | closed
    side: str  # long | short
    qty: float
    entry_price: float
    entry_decision_time: int
    stop_price: float  # NaN: no stop
    target_price: float  # NaN: no target
    model_version: str
    prob: float
    closed_at: int  # 0 while open
    exit_price: float  # NaN while open
    exit_reason: str
    realized_pnl: float  # before fees
    fees: float  # entry + exit fees
    updated_at: int

    def row(self) -> dict[str, Any]:
        return self._asdict()


class EquityRecord(NamedTuple):
    """At candle close `ts`. Portfolio rows (`symbol` ""): cash, equity and the guards' inputs.
    Symbol rows (written while the symbol holds a position or closed one in this step):
    its position, mark and PnL; `equity` is then the symbol's contribution (realized +
    unrealized - fees since the start)."""

    account: str
    symbol: str
    ts: int
    cash: float
    equity: float
    position_qty: float
    mark_price: float
    exposure: float
    unrealized_pnl: float
    realized_pnl: float
    fees: float
    open_positions: int
    peak_equity: float
    drawdown: float
    day_start_equity: float
    day_pnl: float
    halted: int  # kill switch engaged
    drawdown_halted: int
    daily_loss_halted: int

    def row(self) -> dict[str, Any]:
        return self._asdict()


class RiskRecord(NamedTuple):
    account: str
    ts: int
    guard: str  # daily_loss | drawdown | symbol_exposure | concurrency | slippage | kill_switch | cash | ...
    kind: str  # trip | clear | refusal | control | warning
    symbol: str
    value: float
    threshold: float  # the guard's limit
    state: str  # the guard's state after this event: ok | tripped | halted
    reason: str
    details: str  # JSON
    event_id: str

    def row(self) -> dict[str, Any]:
        return self._asdict()
