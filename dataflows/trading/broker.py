"""The paper broker's prices and fees (pure).

A market order decided on candle T fills at the open of the symbol's next candle, moved
by the paper slippage against the trader (a buy pays more, a sell gets less). A stop
fills at its level (or the open if the candle gapped through it) with the same slippage;
a take-profit is a resting limit order: its level (or the better open), no slippage.
Fees are a fraction of the fill's notional: taker for market and stop fills; maker for
take-profit fills when TRADING_FEE_MODE is "mixed"; everything pays the maker fee in
"maker" mode and the taker fee in "taker" mode.
"""

from __future__ import annotations

from dataflows.trading.config import TradingConfig

BPS = 1e-4


def slipped(price: float, buy: bool, slippage_bps: float) -> float:
    """`price` moved `slippage_bps` against the trader."""
    return price * (1.0 + slippage_bps * BPS) if buy else price * (1.0 - slippage_bps * BPS)


def liquidity(order_type: str, cfg: TradingConfig) -> str:
    if cfg.fee_mode == "maker" or (cfg.fee_mode == "mixed" and order_type == "limit"):
        return "maker"
    return "taker"


def fee_rate(order_type: str, cfg: TradingConfig) -> float:
    return cfg.fee_maker if liquidity(order_type, cfg) == "maker" else cfg.fee_taker


def slippage_vs_reference(price: float, reference: float, buy: bool) -> float:
    """How much worse than `reference` the fill is, in bps (negative = better)."""
    return ((price - reference) / reference if buy else (reference - price) / reference) / BPS
