"""Feature names shared by the dataflow, the trainer and the API.

The `features` table stores these columns under exactly these names, so the
trainer reads what the flow served (DESIGN §5).
"""

from __future__ import annotations

# Market block, computed from the symbol's own candles with close_time <= T
# (candle T itself included: it has closed at T).
#   ret_k     = ln(close_T / close_{T-k})                     k = 1, 5, 15
#   rv_30     = sqrt(sum of the last 30 squared 1-candle log returns)
#   atr_14    = mean of the last 14 true ranges / close_T
#               (TR = max(high-low, |high-prev_close|, |low-prev_close|))
#   rsi_14    = 100 * G / (G + L), G/L = mean gain/loss of the last 14 closes' changes
#               (50 when G + L == 0)
#   vol_z_30  = (volume_T - mean_30) / pstd_30 over the last 30 volumes incl. T (0 when pstd == 0)
#   hl_range  = (high_T - low_T) / close_T
# NaN when there is not enough history.
MARKET_FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_15",
    "rv_30",
    "atr_14",
    "rsi_14",
    "vol_z_30",
    "hl_range",
)

# Sentiment block (seed names, TRAINING_SENTIMENT_FEATURES default).
SENTIMENT_FEATURES: tuple[str, ...] = (
    "sent_score",
    "sent_cnt",
    "sent_pos_ratio",
    "sent_d1",
    "sent_d5",
    "sent_vol_30",
    "sent_ema_5m",
    "sent_ema_15m",
    "sent_ema_60m",
)

OPTIONAL_SENTIMENT_FEATURES: tuple[str, ...] = ("sent_composite",)

ALL_FEATURES: tuple[str, ...] = MARKET_FEATURES + SENTIMENT_FEATURES + OPTIONAL_SENTIMENT_FEATURES
