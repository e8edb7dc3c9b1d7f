"""Accuracy health of production predictions (seed 004): GOOD / WARNING / CRITICAL.

A prediction is *right* when ``(prob >= 0.5) == label``. Accuracies are fractions in
[0, 1] everywhere in this module (the seed prints percentages; format at the edge).

Health is per model version, on that version's own labeled predictions
(``VersionedAccuracy``): a model promoted a minute ago starts at ``INSUFFICIENT_DATA``
instead of inheriting the baseline's or its predecessor's record, and no state other than
``INSUFFICIENT_DATA`` is given before ``min_samples`` (``ACCURACY_MIN_SAMPLES``) of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "INSUFFICIENT_DATA",
    "AccuracyMonitor",
    "AccuracyState",
    "VersionedAccuracy",
    "classify_accuracy",
    "daily_trend",
    "health_of",
    "should_emergency_retrain",
]

Health = Literal["GOOD", "WARNING", "CRITICAL"]
HealthState = Literal["GOOD", "WARNING", "CRITICAL", "INSUFFICIENT_DATA"]
INSUFFICIENT_DATA: HealthState = "INSUFFICIENT_DATA"
HEALTH_STATES: tuple[HealthState, ...] = ("GOOD", "WARNING", "CRITICAL", "INSUFFICIENT_DATA")
_DAY_MS = 86_400_000


def _check_thresholds(good: float, warning: float) -> None:
    if not 0.0 <= warning <= good <= 1.0:
        raise ValueError(f"need 0 <= warning <= good <= 1 (fractions); got warning={warning!r}, good={good!r}")


def classify_accuracy(acc: float, good: float = 0.70, warning: float = 0.50) -> Health:
    """``GOOD`` if acc >= good, ``WARNING`` if acc >= warning, else ``CRITICAL``.

    >>> classify_accuracy(0.7), classify_accuracy(0.69), classify_accuracy(0.49)
    ('GOOD', 'WARNING', 'CRITICAL')
    """
    _check_thresholds(good, warning)
    if not (isinstance(acc, (int, float, np.floating)) and 0.0 <= acc <= 1.0):
        hint = " (a percentage? pass a fraction)" if isinstance(acc, (int, float)) and 1 < acc <= 100 else ""
        raise ValueError(f"accuracy must be a fraction in [0, 1]; got {acc!r}{hint}")
    if acc >= good:
        return "GOOD"
    if acc >= warning:
        return "WARNING"
    return "CRITICAL"


def health_of(acc: float | None, n: int, min_samples: int, good: float = 0.70, warning: float = 0.50) -> HealthState:
    """``INSUFFICIENT_DATA`` below ``min_samples`` labeled predictions, else ``classify_accuracy``.

    >>> health_of(0.2, 99, 100), health_of(0.2, 100, 100)
    ('INSUFFICIENT_DATA', 'CRITICAL')
    """
    if acc is None or n < max(1, min_samples):
        return INSUFFICIENT_DATA
    return classify_accuracy(acc, good, warning)


def _correct(prob: ArrayLike, label: ArrayLike) -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(label)
    if p.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"prob and label must be 1-D with the same length; got {p.shape} and {y.shape}")
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValueError("prob must be finite and in [0, 1]; got a value outside it")
    if np.any((y != 0) & (y != 1)):
        raise ValueError("label must be 0 or 1; got another value")
    return (p >= 0.5) == (y == 1)


@dataclass(frozen=True)
class AccuracyState:
    """Snapshot used for the health gauge and the emergency-retrain decision."""

    accuracy: float | None
    n: int
    health: HealthState
    min_samples: int
    last_emergency_ms: int | None


class AccuracyMonitor:
    """Rolling directional accuracy over the last ``window`` labeled predictions.

    A fixed boolean ring: memory is ``window`` bytes whatever the traffic.

    >>> m = AccuracyMonitor(window=4, min_samples=1)
    >>> m.add([0.9, 0.2, 0.6, 0.1, 0.8], [1, 0, 0, 0, 1])
    >>> m.state().accuracy, m.state().n
    (0.75, 4)
    """

    def __init__(
        self,
        window: int = 1000,
        *,
        good: float = 0.70,
        warning: float = 0.50,
        min_samples: int = 100,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1; got {window!r}")
        if min_samples < 0:
            raise ValueError(f"min_samples must be >= 0; got {min_samples!r}")
        _check_thresholds(good, warning)
        self.window, self.good, self.warning, self.min_samples = (
            int(window),
            good,
            warning,
            int(min_samples),
        )
        self._ring = np.zeros(self.window, np.bool_)
        self._pos = 0  # next slot to write
        self._count = 0
        self.last_emergency_ms: int | None = None

    def add(self, prob: ArrayLike, label: ArrayLike) -> None:
        """Record labeled predictions in arrival order (oldest first)."""
        ok = _correct(prob, label)[-self.window :]
        idx = (self._pos + np.arange(ok.size)) % self.window
        self._ring[idx] = ok
        self._pos = (self._pos + ok.size) % self.window
        self._count = min(self.window, self._count + ok.size)

    @property
    def accuracy(self) -> float | None:
        if self._count == 0:
            return None
        # the unwritten part of the ring is all False, so a full sum counts only real rows
        return float(self._ring.sum()) / self._count

    @property
    def count(self) -> int:
        return self._count

    def state(self) -> AccuracyState:
        acc = self.accuracy
        health = health_of(acc, self._count, self.min_samples, self.good, self.warning)
        return AccuracyState(acc, self._count, health, self.min_samples, self.last_emergency_ms)

    def record_emergency_retrain(self, ts_ms: int) -> None:
        """Remember when an emergency retrain started (starts its cooldown)."""
        self.last_emergency_ms = int(ts_ms)


def should_emergency_retrain(state: AccuracyState, now_ms: int, cooldown_s: float) -> bool:
    """True on CRITICAL with at least ``min_samples`` rows and outside the cooldown
    (``now − last_emergency >= cooldown_s``)."""
    if state.health != "CRITICAL" or state.n < state.min_samples:
        return False
    return state.last_emergency_ms is None or (now_ms - state.last_emergency_ms) >= cooldown_s * 1000.0


class VersionedAccuracy:
    """One ``AccuracyMonitor`` per model version, fed only with that version's labeled
    predictions, and one emergency cooldown for the whole system (a retrain storm across
    successive models is what the cooldown prevents).

    At most ``max_versions`` versions are kept (the least recently fed one goes first), so
    the state stays bounded however many models are promoted.

    >>> book = VersionedAccuracy(window=10, min_samples=3)
    >>> book.add("baseline", [0.9, 0.9, 0.9], [0, 0, 0])
    >>> book.add("m1", [0.9], [1])
    >>> book.state("baseline").health, book.state("m1").health, book.state("m1").accuracy
    ('CRITICAL', 'INSUFFICIENT_DATA', 1.0)
    """

    def __init__(
        self,
        window: int = 1000,
        *,
        good: float = 0.70,
        warning: float = 0.50,
        min_samples: int = 100,
        max_versions: int = 16,
    ) -> None:
        if max_versions < 1:
            raise ValueError(f"max_versions must be >= 1; got {max_versions!r}")
        AccuracyMonitor(1, good=good, warning=warning, min_samples=min_samples)  # validates the thresholds
        self.window, self.good, self.warning, self.min_samples = int(window), good, warning, int(min_samples)
        self.max_versions = int(max_versions)
        self._monitors: dict[str, AccuracyMonitor] = {}  # insertion order = least recently fed first
        self.last_emergency_ms: int | None = None

    def add(self, version: str, prob: ArrayLike, label: ArrayLike) -> None:
        """Record labeled predictions made by ``version`` (oldest first)."""
        monitor = self._monitors.pop(version, None)
        if monitor is None:
            monitor = AccuracyMonitor(self.window, good=self.good, warning=self.warning, min_samples=self.min_samples)
        monitor.add(prob, label)
        self._monitors[version] = monitor
        while len(self._monitors) > self.max_versions:
            del self._monitors[next(iter(self._monitors))]

    def versions(self) -> list[str]:
        return list(self._monitors)

    def state(self, version: str) -> AccuracyState:
        """The version's own state (``INSUFFICIENT_DATA`` with n = 0 for a version never fed)."""
        monitor = self._monitors.get(version)
        if monitor is None:
            return AccuracyState(None, 0, INSUFFICIENT_DATA, self.min_samples, self.last_emergency_ms)
        own = monitor.state()
        return AccuracyState(own.accuracy, own.n, own.health, own.min_samples, self.last_emergency_ms)

    def record_emergency_retrain(self, ts_ms: int) -> None:
        self.last_emergency_ms = int(ts_ms)


def daily_trend(
    ts_ms: ArrayLike,
    correct: ArrayLike,
    days: int,
    *,
    end_ms: int | None = None,
) -> list[dict[str, Any]]:
    """Accuracy per UTC day over the ``days`` days ending with the day of ``end_ms``.

    ``end_ms`` defaults to the newest ``ts``. Days without rows are left out. Returns
    ``[{date: 'YYYY-MM-DD', accuracy: fraction, n}]`` in date order.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    ok = np.asarray(correct)
    if ts.ndim != 1 or ts.shape != ok.shape:
        raise ValueError(f"ts_ms and correct must be 1-D with the same length; got {ts.shape} and {ok.shape}")
    if days < 1:
        raise ValueError(f"days must be >= 1; got {days!r}")
    if ts.size == 0:
        return []
    day = ts // _DAY_MS  # floor division keeps pre-1970 days right too
    last = (int(ts.max()) if end_ms is None else int(end_ms)) // _DAY_MS
    first = last - days + 1
    keep = (day >= first) & (day <= last)
    rel = (day[keep] - first).astype(np.int64)
    n = np.bincount(rel, minlength=days)
    hits = np.bincount(rel, weights=ok[keep].astype(np.float64), minlength=days)
    epoch = dt.date(1970, 1, 1)
    return [
        {
            "date": (epoch + dt.timedelta(days=first + i)).isoformat(),
            "accuracy": float(hits[i] / n[i]),
            "n": int(n[i]),
        }
        for i in np.flatnonzero(n).tolist()
    ]
