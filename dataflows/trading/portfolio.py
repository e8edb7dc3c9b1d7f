"""Cash, open positions and marks; equity marked to market (pure, no I/O).

Accounting is cash based (no leverage): a long entry pays `qty * price + fee`, a short
entry receives `qty * price - fee`; equity = cash + Σ side * qty * mark. So equity =
starting equity + realized PnL (closed, before fees) + unrealized PnL - fees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Position:
    symbol: str
    side: int  # +1 long, -1 short
    qty: float  # > 0
    entry_price: float
    opened_at: int  # the entry fill's time: the position's id
    entry_decision_time: int
    stop: float  # NaN: none
    target: float  # NaN: none
    model_version: str
    prob: float
    entry_fee: float

    @property
    def side_name(self) -> str:
        return "long" if self.side > 0 else "short"


@dataclass
class Portfolio:
    cash: float
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    realized: float = 0.0  # closed positions, before fees
    fees: float = 0.0
    symbol_realized: dict[str, float] = field(default_factory=dict)
    symbol_fees: dict[str, float] = field(default_factory=dict)

    def mark(self, symbol: str) -> float:
        return self.marks.get(symbol, math.nan)

    def unrealized(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        if pos is None:
            return 0.0
        return pos.side * pos.qty * (self.marks[symbol] - pos.entry_price)

    def exposure(self, symbol: str) -> float:
        pos = self.positions.get(symbol)
        return 0.0 if pos is None else pos.qty * self.marks[symbol]

    def gross_exposure(self) -> float:
        return sum(p.qty * self.marks[s] for s, p in self.positions.items())

    def equity(self) -> float:
        return self.cash + sum(p.side * p.qty * self.marks[s] for s, p in self.positions.items())

    def total_unrealized(self) -> float:
        return sum(p.side * p.qty * (self.marks[s] - p.entry_price) for s, p in self.positions.items())

    def open(self, pos: Position, fee: float) -> None:
        self.cash -= pos.side * pos.qty * pos.entry_price + fee
        self.fees += fee
        self.symbol_fees[pos.symbol] = self.symbol_fees.get(pos.symbol, 0.0) + fee
        self.positions[pos.symbol] = pos
        self.marks[pos.symbol] = pos.entry_price

    def close(self, symbol: str, price: float, fee: float) -> tuple[Position, float]:
        """Close the symbol's position at `price`; (the position, realized PnL before fees)."""
        pos = self.positions.pop(symbol)
        pnl = pos.side * pos.qty * (price - pos.entry_price)
        self.cash += pos.side * pos.qty * price - fee
        self.realized += pnl
        self.fees += fee
        self.symbol_realized[symbol] = self.symbol_realized.get(symbol, 0.0) + pnl
        self.symbol_fees[symbol] = self.symbol_fees.get(symbol, 0.0) + fee
        self.marks[symbol] = price
        return pos, pnl
