"""When to enter and exit: pure functions of a candle's prediction, the position and the config.

    long entry    p >= entry                        (flat, past the symbol's warm-up)
    short entry   p <= 1 - entry                    (only with allow_short)
    signal exit   long: p <= exit; short: p >= 1 - exit
    timeout       held for max_holding_ms or more (decision time - entry fill time)
    stop / target intrabar, against the candle's low/high; both inside one candle -> the stop

Levels are set at the entry fill from the decision candle's ATR 14 (a fraction of the
price): long stop = fill * (1 - k_stop * atr), long target = fill * (1 + k_tp * atr);
mirrored for a short.
"""

from __future__ import annotations

import math

from dataflows.trading.config import TradingConfig

LONG, SHORT = 1, -1


def entry_side(prob: float, cfg: TradingConfig) -> int:
    """+1 (long), -1 (short) or 0 (no entry) for a flat symbol."""
    if prob >= cfg.entry:
        return LONG
    if cfg.allow_short and prob <= 1.0 - cfg.entry:
        return SHORT
    return 0


def signal_exit(side: int, prob: float, cfg: TradingConfig) -> bool:
    return prob <= cfg.exit if side == LONG else prob >= 1.0 - cfg.exit


def timed_out(decision_time: int, opened_at: int, cfg: TradingConfig) -> bool:
    return decision_time - opened_at >= cfg.max_holding_ms


def protective_levels(side: int, fill_price: float, atr: float, cfg: TradingConfig) -> tuple[float, float]:
    """(stop, target); NaN for a level that is not configured."""
    stop = math.nan if cfg.atr_stop is None else fill_price * (1.0 - side * cfg.atr_stop * atr)
    target = math.nan if cfg.atr_take_profit is None else fill_price * (1.0 + side * cfg.atr_take_profit * atr)
    return stop, target


def intrabar_exit(
    side: int, stop: float, target: float, open_: float, high: float, low: float, *, opened_at_this_open: bool
) -> tuple[str, float] | None:
    """("stop" | "target", raw fill price before slippage) when the candle reaches a level.

    The stop wins when both are inside the candle (the order of high and low within a
    candle is unknown; assuming the worse is conservative). A candle that opens beyond
    a level (a gap) fills at its open, the first price there was; a position opened at
    this candle's open cannot have gapped, so its levels fill at the level itself.
    """
    if side == LONG:
        stop_hit = not math.isnan(stop) and low <= stop
        target_hit = not math.isnan(target) and high >= target
        if stop_hit:
            return "stop", (open_ if open_ <= stop and not opened_at_this_open else stop)
        if target_hit:
            return "target", (open_ if open_ >= target and not opened_at_this_open else target)
        return None
    stop_hit = not math.isnan(stop) and high >= stop
    target_hit = not math.isnan(target) and low <= target
    if stop_hit:
        return "stop", (open_ if open_ >= stop and not opened_at_this_open else stop)
    if target_hit:
        return "target", (open_ if open_ <= target and not opened_at_this_open else target)
    return None
