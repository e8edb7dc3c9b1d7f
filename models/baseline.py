"""Statistical fallback: the rolling base rate of up-moves per symbol (seed 004 "통계 모드").

``prob(symbol) = (number of label 1 among the last N labels of symbol) / (labels seen, ≤ N)``,
and ``prior`` (0.5) for a symbol with no label yet. It needs no model file, so it keeps
serving when the ONNX model is missing, corrupt or failing (DESIGN §6).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_WINDOW = 500
DEFAULT_PRIOR = 0.5


class _Ring:
    """The last ``window`` labels of one symbol with their running sum (O(1) update)."""

    __slots__ = ("labels", "ups")

    def __init__(self, window: int) -> None:
        self.labels: deque[int] = deque(maxlen=window)
        self.ups = 0

    def push(self, label: int) -> None:
        if len(self.labels) == self.labels.maxlen:
            self.ups -= self.labels[0]
        self.labels.append(label)
        self.ups += label


class Baseline:
    """Rolling per-symbol base rate, bounded to the last ``window`` labels per symbol."""

    def __init__(self, *, window: int = DEFAULT_WINDOW, prior: float = DEFAULT_PRIOR) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"Baseline window must be an int >= 1, got {window!r}")
        if not 0.0 <= prior <= 1.0:
            raise ValueError(f"Baseline prior must be a probability in [0, 1], got {prior!r}")
        self.window = window
        self.prior = float(prior)
        self._rings: dict[str, _Ring] = {}

    def update(self, symbol: str, label: int) -> None:
        """Record one realised label (1 = close went up over the horizon, 0 = not)."""
        if label not in (0, 1):
            raise ValueError(f"label for {symbol!r} must be 0 or 1, got {label!r}")
        self.extend((symbol,), (label,))

    def extend(self, symbols: Iterable[str], labels: Iterable[int]) -> None:
        """``update`` for each pair, in order (oldest first)."""
        rings, window = self._rings, self.window  # one loop, no call per label: a live burst brings one per symbol
        for symbol, value in zip(symbols, labels, strict=True):
            label = int(value)
            if label not in (0, 1):
                raise ValueError(f"label for {symbol!r} must be 0 or 1, got {label!r}")
            ring = rings.get(symbol)
            if ring is None:
                ring = rings[symbol] = _Ring(window)
            ring.push(label)

    def prob(self, symbol: str) -> float:
        ring = self._rings.get(symbol)
        if ring is None or not ring.labels:
            return self.prior
        return ring.ups / len(ring.labels)

    def probs(self, symbols: Sequence[str]) -> np.ndarray:
        """``prob`` for each symbol of a batch, float64."""
        return np.fromiter((self.prob(s) for s in symbols), dtype=np.float64, count=len(symbols))

    def count(self, symbol: str) -> int:
        ring = self._rings.get(symbol)
        return 0 if ring is None else len(ring.labels)


def base_rates(symbols: Sequence[str] | np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Training base rate per symbol: mean label of each symbol over the whole split."""
    sym = np.asarray(symbols, dtype=object)
    lab = np.asarray(labels, dtype=np.float64)
    if sym.shape != lab.shape:
        raise ValueError(f"symbols and labels differ in length: {sym.shape} vs {lab.shape}")
    rates: dict[str, float] = {}
    for s in np.unique(sym):
        rates[str(s)] = float(lab[sym == s].mean())
    return rates


def base_rate_probs(
    rates: dict[str, float], symbols: Sequence[str] | np.ndarray, *, prior: float = DEFAULT_PRIOR
) -> np.ndarray:
    """Per-row baseline probability from ``base_rates``; symbols unseen in training get ``prior``."""
    return np.fromiter((rates.get(s, prior) for s in symbols), dtype=np.float64, count=len(symbols))
