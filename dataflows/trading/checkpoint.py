"""The engine's state as text, stored with the trading rows (table `trading_checkpoints`).

A restart without a Bytewax snapshot rebuilds the book from the stored rows
(`tickcast.app.backtest.live_book`); stepping the whole stored history through the engine
grows with the history (~8 µs a stored bar). The stage therefore stores its engine state
after the first step of every hour of event time, and the rebuild starts from the newest
checkpoint at or before the last stored portfolio row, stepping only the bars after it.

JSON, not pickle: the store is readable and writable by more than the flow (SQL users, API
replicas with a server store), and a pickle read back from it would run whatever it holds.
Python's `json` writes floats with `repr` (exact round trip) and NaN/Infinity as literals
(a position without a stop has stop = NaN). `FORMAT` changes when the state's shape does;
a checkpoint of another format is ignored (the rebuild then starts from the beginning).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from dataflows.trading.engine import EngineState, PendingOrder
from dataflows.trading.guards import Guards, GuardState
from dataflows.trading.portfolio import Portfolio, Position
from dataflows.trading.sizing import TradeStats

FORMAT = 1
EVERY_MS = 3_600_000  # one checkpoint per hour of event time (after its first candle time)
TABLE = "trading_checkpoints"


def due(previous_clock: int, t: int) -> bool:
    """A checkpoint after stepping candle time `t` from `previous_clock`: the first step of an hour."""
    return previous_clock // EVERY_MS != t // EVERY_MS


def to_text(state: EngineState) -> str:
    return json.dumps(asdict(state), separators=(",", ":"))


def from_text(text: str) -> EngineState:
    """The state `to_text` wrote; KeyError/TypeError/ValueError when the text is not one."""
    d: dict[str, Any] = json.loads(text)
    p, g = d["portfolio"], d["guards"]
    return EngineState(
        portfolio=Portfolio(
            cash=p["cash"],
            positions={s: Position(**pos) for s, pos in p["positions"].items()},
            marks=dict(p["marks"]),
            realized=p["realized"],
            fees=p["fees"],
            symbol_realized=dict(p["symbol_realized"]),
            symbol_fees=dict(p["symbol_fees"]),
        ),
        guards=Guards(
            kill_switch=GuardState(**g["kill_switch"]),
            drawdown=GuardState(**g["drawdown"]),
            daily_loss=GuardState(**g["daily_loss"]),
            peak_equity=g["peak_equity"],
            day=g["day"],
            day_start_equity=g["day_start_equity"],
        ),
        pending={s: PendingOrder(**o) for s, o in d["pending"].items()},
        seen=dict(d["seen"]),
        stats=TradeStats(**d["stats"]),
        clock=d["clock"],
        controls_seen=list(d["controls_seen"]),
    )


def row(account: str, t: int, state: EngineState) -> dict[str, Any]:
    return {"account": account, "ts": t, "format": FORMAT, "state": to_text(state)}
