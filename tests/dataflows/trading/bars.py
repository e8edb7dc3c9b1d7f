"""Small builders for the trading tests: bars, a config, running an engine over steps."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from dataflows.trading.config import TradingConfig
from dataflows.trading.engine import Engine, TradingOut
from dataflows.trading.items import TradeBar

MIN = 60_000
T0 = 1_763_683_200_000  # 2025-11-21 00:00 UTC


def bar(
    symbol: str,
    t: int,
    *,
    o: float = 100.0,
    h: float | None = None,
    lo: float | None = None,
    c: float | None = None,
    p: float = 0.5,
    atr: float = 0.01,
    version: str = "m1",
) -> TradeBar:
    c = o if c is None else c
    h = max(o, c) if h is None else h
    lo = min(o, c) if lo is None else lo
    return TradeBar(symbol, t, o, h, lo, c, atr, p, version, "")


def config(**kw: Any) -> TradingConfig:
    base: dict[str, Any] = dict(
        warmup_candles=0,
        slippage_bps=0.0,
        fee_taker=0.0,
        fee_maker=0.0,
        atr_stop=None,
        atr_take_profit=None,
        daily_loss_cap=1.0,
        max_drawdown=1.0,
        max_concurrent=100,
        max_symbol_exposure=10.0,
        max_holding_ms=10**12,
    )
    base.update(kw)
    return TradingConfig(**base)


def run_steps(engine: Engine, bars: list[TradeBar]) -> TradingOut:
    """Step the engine through `bars` grouped by close_time (sorted by symbol within a time)."""
    out = TradingOut()
    by_time: dict[int, list[TradeBar]] = defaultdict(list)
    for b in bars:
        by_time[b.close_time].append(b)
    for t in sorted(by_time):
        engine.step(t, sorted(by_time[t], key=lambda b: b.symbol), out)
    return out


def rows(records: list[Any]) -> list[dict[str, Any]]:
    return [r.row() for r in records]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
