"""The trading stage's settings as one frozen value (built from `tickcast.settings.Settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tickcast.records import INTERVAL_MS
from tickcast.settings import Settings


@dataclass(frozen=True)
class TradingConfig:
    account: str = "paper"
    interval: str = "1m"
    entry: float = 0.55
    exit: float = 0.50
    allow_short: bool = False
    trade_baseline: bool = False
    fee_mode: Literal["taker", "maker", "mixed"] = "taker"
    fee_taker: float = 0.001
    fee_maker: float = 0.001
    slippage_bps: float = 2.0
    sizing: Literal["fixed", "kelly"] = "fixed"
    base_size: float = 100.0
    kelly_fraction: float = 0.25
    kelly_cap: float = 0.05
    kelly_min_trades: int = 20
    max_holding_ms: int = 3_600_000
    warmup_candles: int = 30
    starting_equity: float = 10_000.0
    daily_loss_cap: float = 0.03
    day_timezone: str = "UTC"
    max_drawdown: float = 0.10
    drawdown_flatten: bool = False
    max_symbol_exposure: float = 0.25
    max_concurrent: int = 5
    atr_stop: float | None = 2.0
    atr_take_profit: float | None = 3.0
    max_slippage_bps: float = 50.0

    @property
    def interval_ms(self) -> int:
        return INTERVAL_MS[self.interval]

    @classmethod
    def from_settings(cls, s: Settings, *, account: str | None = None) -> TradingConfig:
        return cls(
            account=account or s.TRADING_ACCOUNT,
            interval=s.TRADING_INTERVAL,
            entry=s.TRADING_ENTRY_THRESHOLD,
            exit=s.TRADING_EXIT_THRESHOLD,
            allow_short=s.TRADING_ALLOW_SHORT,
            trade_baseline=s.TRADING_TRADE_BASELINE,
            fee_mode=s.TRADING_FEE_MODE,
            fee_taker=s.TRADING_FEE_TAKER,
            fee_maker=s.TRADING_FEE_MAKER,
            slippage_bps=s.TRADING_PAPER_SLIPPAGE_BPS,
            sizing=s.TRADING_SIZING_MODE,
            base_size=s.LIVE_TRADE_BASE_SIZE,
            kelly_fraction=s.TRADING_KELLY_FRACTION,
            kelly_cap=s.TRADING_KELLY_CAP,
            kelly_min_trades=s.TRADING_KELLY_MIN_TRADES,
            max_holding_ms=s.trading_max_holding_ms,
            warmup_candles=s.TRADING_WARMUP_CANDLES,
            starting_equity=s.RISK_STARTING_EQUITY,
            daily_loss_cap=s.RISK_DAILY_LOSS_CAP,
            day_timezone=s.RISK_DAILY_LOSS_TIMEZONE,
            max_drawdown=s.RISK_MAX_DRAWDOWN,
            drawdown_flatten=s.RISK_DRAWDOWN_FLATTEN,
            max_symbol_exposure=s.RISK_MAX_SYMBOL_EXPOSURE,
            max_concurrent=s.RISK_MAX_CONCURRENT_POSITIONS,
            atr_stop=s.RISK_ATR_STOP_MULT,
            atr_take_profit=s.RISK_ATR_TAKE_PROFIT_MULT,
            max_slippage_bps=s.RISK_MAX_SLIPPAGE_BPS,
        )
