"""Per-(symbol, interval) market state: candle ring -> features and labels (DESIGN §5, §6).

Thin glue over `dataflows.kernels.market`. The state is a fixed-size numpy ring of
the last `ring` candles, so a Bytewax snapshot of it has the same size after ten
candles or ten million.

Interval: `MarketConfig.interval_ms` when given, else `close_time - open_time` of the
first candle accepted. Every later candle must span the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataflows.kernels import market as k
from dataflows.kernels.entry import resolve

__all__ = [
    "CandleRejected",
    "IntervalMismatch",
    "MarketConfig",
    "MarketState",
    "OutOfOrderCandle",
    "market_features_batch",
]


class CandleRejected(ValueError):
    """A candle the state refuses; the caller turns it into a rejected record."""


class OutOfOrderCandle(CandleRejected):
    """A candle closing before the newest one in the ring, and not a replay of a ring candle."""


class IntervalMismatch(CandleRejected):
    """A candle whose close_time - open_time is not the state's interval."""


@dataclass(frozen=True)
class MarketConfig:
    """ring: candles kept (>= 31, what rv_30 needs); horizon: LABEL_HORIZON in candles;
    interval_ms: candle length, or None to take it from the first candle."""

    ring: int = 64
    horizon: int = 1
    interval_ms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ring, int) or self.ring < k.MIN_HISTORY:
            raise ValueError(
                f"MarketConfig.ring must be an int >= {k.MIN_HISTORY} (rv_30 looks back "
                f"{k.MIN_HISTORY} candles). Got {self.ring!r} instead."
            )
        if not isinstance(self.horizon, int) or not 1 <= self.horizon <= self.ring:
            raise ValueError(
                f"MarketConfig.horizon must be an int in [1, ring={self.ring}] (the labeled "
                f"candle must still be in the ring). Got {self.horizon!r} instead."
            )
        if self.interval_ms is not None and (not isinstance(self.interval_ms, int) or self.interval_ms <= 0):
            raise ValueError(
                f"MarketConfig.interval_ms must be a positive int or None. Got {self.interval_ms!r} instead."
            )


class MarketState:
    """Streaming market features and labels of one (symbol, interval). Picklable, bounded."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = config if config is not None else MarketConfig()
        ring = self.config.ring
        self._times = np.zeros((ring, 2), dtype=np.int64)
        self._values = np.full((5, ring), np.nan)
        self._count = np.zeros(1, dtype=np.int64)
        self._interval_ms = self.config.interval_ms
        # Scratch outputs of the kernel, kept to avoid an allocation per candle. Zeroed, not
        # np.empty: they are pickled with the state, and a snapshot should not hold stray memory
        # (two runs of the same input gave different snapshot bytes).
        self._feats = np.zeros(k.N_FEATURES)
        self._label_close = np.zeros(1)
        self._push: Any = None  # k.push_candle's entry point for this state (`add_candle`)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_push", None)  # a compiled function, not state
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._push = None

    @property
    def interval_ms(self) -> int | None:
        return self._interval_ms

    def __len__(self) -> int:
        return int(self._count[0])

    def add_candle(
        self,
        open_time: int,
        close_time: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> tuple[dict[str, float] | None, list[dict]]:
        """Returns (features_of_this_candle, labels_completed).

        Features of candle T use the candles with close_time <= T in the ring (the last
        k by position, gaps ignored); NaN while history is short. labels_completed holds
        at most one label: the candle closing exactly at T - horizon*interval_ms, with
        label = int(close_T > close_then). A duplicate close_time returns (None, [])
        and changes nothing; an older one raises OutOfOrderCandle.
        """
        open_time, close_time = int(open_time), int(close_time)
        span = close_time - open_time
        interval = span if span == self._interval_ms else self._check_interval(open_time, close_time)
        args = (
            self._times, self._values, self._count, open_time, close_time,
            float(open), float(high), float(low), float(close), float(volume),
            self.config.horizon * interval, self._feats, self._label_close,
        )  # fmt: skip
        # Fixed argument types (this state's arrays, ints and floats converted above): after
        # the first call, the compiled code is called without the dispatcher (kernels/entry.py).
        push = self._push
        if push is None:
            status = k.push_candle(*args)
            self._push = resolve(k.push_candle, args)
        else:
            status = push(*args)
        if status == k.DUPLICATE:
            return None, []
        if status == k.OUT_OF_ORDER:
            raise OutOfOrderCandle(self._out_of_order_message(close_time))
        if self._interval_ms is None:
            self._interval_ms = interval  # fixed only once a candle is accepted
        features = dict(zip(k.COLUMNS, self._feats.tolist()))  # _feats has len(COLUMNS) entries
        if status != k.ACCEPTED_WITH_LABEL:
            return features, []
        close_then = float(self._label_close[0])
        close_now = float(close)
        label = {
            "close_time": close_time - self.config.horizon * interval,
            "horizon": self.config.horizon,
            "label": int(close_now > close_then),
            "close_t": close_then,
            "close_th": close_now,
        }
        return features, [label]

    def _check_interval(self, open_time: int, close_time: int) -> int:
        span = close_time - open_time
        expected = self._interval_ms
        if expected is None:
            if span <= 0:
                raise IntervalMismatch(
                    f"candle close_time {close_time} must be after open_time {open_time} "
                    f"(close_time = open_time + interval)."
                )
            return span
        if span != expected:
            raise IntervalMismatch(
                f"candle [{open_time}, {close_time}) spans {span} ms; this state's interval "
                f"is {expected} ms. Route each interval to its own MarketState."
            )
        return expected

    def _out_of_order_message(self, close_time: int) -> str:
        n = int(self._count[0])
        newest, oldest = int(self._times[n - 1, 1]), int(self._times[0, 1])
        where = "older than the whole ring" if close_time < oldest else "between ring candles"
        return (
            f"candle close_time {close_time} arrived after close_time {newest}; expected a "
            f"close_time > {newest} or a replay of a candle in the ring "
            f"[{oldest}, {newest}] ({where}, not one of them)."
        )


def market_features_batch(
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> np.ndarray:
    """MARKET_FEATURES of every row of one symbol's candle history, in time order.

    Returns an (n, 8) float64 array; row i uses rows <= i only, by position (gaps are not
    seen), and equals what MarketState returns for that candle bit for bit.
    `open` is unused by the formulas; it is taken so callers pass a whole OHLCV frame.
    """
    cols = [np.ascontiguousarray(a, dtype=np.float64) for a in (open, high, low, close, volume)]
    n = cols[0].shape[0]
    for name, a in zip(("open", "high", "low", "close", "volume"), cols, strict=True):
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"market_features_batch: {name} must be 1-D of length {n} like open. Got shape {a.shape}.")
    return k.features_batch(cols[1], cols[2], cols[3], cols[4])
