"""Numba kernels for the market feature block (DESIGN §5) and the candle ring.

Formulas are those of `tickcast.features` (MARKET_FEATURES); the column order of
every output here is `COLUMNS`, which equals MARKET_FEATURES.

One scalar kernel, `features_at`, computes the 8 features of one candle from the
candles at and before it. Both the streaming ring (`push_candle`) and the batch
path (`features_batch`) call it on the same values in the same order, so the two
agree bit for bit, not just within a tolerance.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tickcast.features import MARKET_FEATURES

COLUMNS: tuple[str, ...] = MARKET_FEATURES  # the kernel writes its output columns in this order

N_FEATURES = len(COLUMNS)
RV_WINDOW = 30
ATR_WINDOW = 14
RSI_WINDOW = 14
VOL_WINDOW = 30
# rv_30 needs 30 one-candle returns, i.e. 31 candles: the deepest look-back of the block.
MIN_HISTORY = RV_WINDOW + 1

# Row indices of the ring's value matrix (5, ring).
OPEN, HIGH, LOW, CLOSE, VOLUME = 0, 1, 2, 3, 4

# push_candle status codes.
ACCEPTED = 0
ACCEPTED_WITH_LABEL = 1
DUPLICATE = 2
OUT_OF_ORDER = 3


@njit(cache=True)
def features_at(high, low, close, volume, end, out):  # pragma: no cover - compiled
    """Write the features of candle `end` into `out[:8]`, reading rows `end-30 .. end` only.

    ret_k = ln(c_T/c_{T-k}); rv_30 = sqrt(Σ_{30} r²); atr_14 = mean_{14}(TR)/c_T;
    rsi_14 = 100·G/(G+L) (50 if G+L == 0); vol_z_30 = (v_T − mean_30)/pstd_30 (0 if flat);
    hl_range = (h_T − l_T)/c_T. NaN where fewer rows than a window needs.
    """
    for j in range(N_FEATURES):
        out[j] = np.nan
    c = close[end]
    out[7] = (high[end] - low[end]) / c
    if end >= 1:
        out[0] = math.log(c / close[end - 1])
    if end >= 5:
        out[1] = math.log(c / close[end - 5])
    if end >= 15:
        out[2] = math.log(c / close[end - 15])
    if end >= RV_WINDOW:
        s = 0.0
        for i in range(end - RV_WINDOW + 1, end + 1):
            r = math.log(close[i] / close[i - 1])
            s += r * r
        out[3] = math.sqrt(s)
    if end >= ATR_WINDOW:
        s = 0.0
        for i in range(end - ATR_WINDOW + 1, end + 1):
            pc = close[i - 1]
            s += max(high[i] - low[i], abs(high[i] - pc), abs(low[i] - pc))
        out[4] = (s / ATR_WINDOW) / c
    if end >= RSI_WINDOW:
        g = 0.0
        los = 0.0
        for i in range(end - RSI_WINDOW + 1, end + 1):
            d = close[i] - close[i - 1]
            if d > 0.0:
                g += d
            else:
                los -= d
        gain = g / RSI_WINDOW
        loss = los / RSI_WINDOW
        out[5] = 50.0 if gain + loss == 0.0 else 100.0 * gain / (gain + loss)
    if end >= VOL_WINDOW - 1:
        start = end - VOL_WINDOW + 1
        s = 0.0
        vmin = volume[start]
        vmax = volume[start]
        for i in range(start, end + 1):
            s += volume[i]
            vmin = min(vmin, volume[i])
            vmax = max(vmax, volume[i])
        if vmin == vmax:
            # pstd is exactly 0 only for a flat window; testing the values, not the
            # rounded std, keeps a flat window at 0 instead of a ratio of rounding noise.
            out[6] = 0.0
        else:
            mean = s / VOL_WINDOW
            ss = 0.0
            for i in range(start, end + 1):
                dv = volume[i] - mean
                ss += dv * dv
            out[6] = (volume[end] - mean) / math.sqrt(ss / VOL_WINDOW)


@njit(cache=True)
def features_batch(high, low, close, volume):  # pragma: no cover - compiled
    """Features of every row of one symbol's history: (n, 8), row i from rows <= i."""
    n = close.shape[0]
    out = np.empty((n, N_FEATURES))
    for end in range(n):
        features_at(high, low, close, volume, end, out[end])
    return out


@njit(cache=True)
def push_candle(
    times,
    values,
    count,
    open_time,
    close_time,
    o,
    h,
    lo,
    c,
    v,
    step_ms,
    feats_out,
    label_out,
):  # pragma: no cover - compiled
    """Append one candle to the ring, compute its features, find its label partner.

    times (ring, 2) int64 [open_time, close_time], values (5, ring) float64, count (1,)
    int64: the ring keeps the newest `count` candles in rows/columns 0..count-1, oldest
    first. Shifting 5x64 floats costs less than modular indexing in every window loop.
    step_ms = horizon * interval_ms: the candle closing at close_time - step_ms, if in the
    ring, gets its label now; its close goes to label_out[0].

    Returns DUPLICATE or OUT_OF_ORDER without touching the ring, else ACCEPTED or
    ACCEPTED_WITH_LABEL with the new candle's features in feats_out.
    """
    n = count[0]
    ring = times.shape[0]
    if n > 0 and close_time <= times[n - 1, 1]:
        for i in range(n - 1, -1, -1):
            if times[i, 1] == close_time:
                return DUPLICATE
        return OUT_OF_ORDER

    status = ACCEPTED
    target = close_time - step_ms
    for i in range(n - 1, -1, -1):
        t = times[i, 1]
        if t == target:
            label_out[0] = values[CLOSE, i]
            status = ACCEPTED_WITH_LABEL
            break
        if t < target:
            break

    if n == ring:
        for i in range(ring - 1):
            times[i, 0] = times[i + 1, 0]
            times[i, 1] = times[i + 1, 1]
            for r in range(5):
                values[r, i] = values[r, i + 1]
        n -= 1
    times[n, 0] = open_time
    times[n, 1] = close_time
    values[OPEN, n] = o
    values[HIGH, n] = h
    values[LOW, n] = lo
    values[CLOSE, n] = c
    values[VOLUME, n] = v
    count[0] = n + 1
    features_at(values[HIGH], values[LOW], values[CLOSE], values[VOLUME], n, feats_out)
    return status
