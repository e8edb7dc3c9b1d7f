"""How much to buy: quote notional per entry (pure).

"fixed": LIVE_TRADE_BASE_SIZE. "kelly": fractional Kelly on the calibrated probability
and the realised win/loss ratio b = mean win / mean loss of the closed trades,

    f* = p - (1 - p) / b,      notional = equity * min(fraction * f*, cap)

with p the candle's P(up) for a long (1 - p for a short). Until `kelly_min_trades` trades
have closed (no usable b yet) the base size is used. f* <= 0 means no edge: no entry.
The probability must be calibrated for this to mean anything — that is what the
calibration monitor watches.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataflows.trading.config import TradingConfig


@dataclass
class TradeStats:
    """Closed trades' net PnL (after fees): the realised win/loss ratio's inputs."""

    wins: int = 0
    losses: int = 0
    win_sum: float = 0.0
    loss_sum: float = 0.0  # positive

    def add(self, net_pnl: float) -> None:
        if net_pnl > 0:
            self.wins += 1
            self.win_sum += net_pnl
        else:
            self.losses += 1
            self.loss_sum -= net_pnl

    @property
    def closed(self) -> int:
        return self.wins + self.losses

    def win_loss_ratio(self) -> float | None:
        if not self.wins or not self.losses or self.loss_sum <= 0:
            return None
        return (self.win_sum / self.wins) / (self.loss_sum / self.losses)


def kelly_fraction(p_win: float, ratio: float) -> float:
    """f* = p - (1 - p) / b."""
    return p_win - (1.0 - p_win) / ratio


def entry_notional(cfg: TradingConfig, p_win: float, equity: float, stats: TradeStats) -> float:
    if cfg.sizing == "fixed":
        return cfg.base_size
    ratio = stats.win_loss_ratio()
    if stats.closed < cfg.kelly_min_trades or ratio is None:
        return cfg.base_size
    f = kelly_fraction(p_win, ratio)
    if f <= 0:
        return 0.0
    return equity * min(cfg.kelly_fraction * f, cfg.kelly_cap)
