"""Feature drift (DESIGN §6): one rule, used by the flow and by the Drift page's endpoint.

For each feature of the serving model, over the last ``window`` (``DRIFT_WINDOW``) values the
flow has seen — missing values skipped, rows in ``(close_time, symbol)`` order, every row the
model stage receives (baseline or model) —

    z = (mean − μ_train) / (σ_train / √n)

against the model's training mean and standard deviation. A feature *enters* drift when
``|z| >= threshold`` (``DRIFT_Z_THRESHOLD``) and *leaves* it when ``|z| < REARM × threshold``
(hysteresis: a z hovering around the threshold is one drift, not one event per crossing).
The flow records both transitions as ``drift_events`` (``feature_drift`` /
``feature_drift_exit``); ``GET /api/drift/features`` computes z with ``rolling_z`` (the same
formula, vectorised) on the same rows of the ``features`` table and reads the flow's state
from those events, so the page and the flow give one answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "REARM",
    "FeatureDriftMonitor",
    "FeatureReading",
    "FeatureRing",
    "rolling_z",
    "sort_key_order",
    "z_score",
]

REARM = 0.8  # a drifting feature leaves drift (and can raise a new event) once |z| < 0.8 x threshold


def z_score(mean: float, n: int, mu: float, sigma: float) -> float:
    """``(mean − μ) / (σ / √n)``.

    >>> round(z_score(0.5, 200, 0.0, 1.0), 3)
    7.071
    """
    return (mean - mu) / (sigma / math.sqrt(n))


def rolling_z(t: np.ndarray, values: np.ndarray, window: int, mu: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """z of the mean of the last ``window`` present values, at each value from the window-th on.

    The same numbers ``FeatureDriftMonitor`` gives after each value (missing values are
    skipped, not counted).

    >>> rolling_z(np.arange(4), np.array([1.0, np.nan, 3.0, 5.0]), 2, 2.0, 1.0)[1].round(3).tolist()
    [0.0, 2.828]
    """
    ok = np.isfinite(values)
    v, tt = values[ok].astype(np.float64), t[ok]
    if v.size < window:
        return tt[:0], v[:0]
    csum = np.concatenate(([0.0], np.cumsum(v)))
    means = (csum[window:] - csum[:-window]) / window
    return tt[window - 1 :], (means - mu) / (sigma / math.sqrt(window))


def sort_key_order(close_time: np.ndarray, symbols: list[str]) -> np.ndarray:
    """Row order by (close_time, symbol): the order of ``sql/queries/feature_drift_rows.sql``."""
    if len(symbols) < 2:
        return np.arange(len(symbols))
    return np.lexsort((np.asarray(symbols, dtype=object).astype(str), close_time))


@dataclass
class FeatureRing:
    """The last ``values.size`` present values of one feature (a fixed ring)."""

    values: np.ndarray
    pos: int = 0
    count: int = 0

    def add_many(self, values: np.ndarray) -> None:
        """Append values in order (what one `add` per value would leave in the ring)."""
        size = self.values.size
        n = values.size
        kept = values[-size:]
        self.values[(self.pos + n - kept.size + np.arange(kept.size)) % size] = kept
        self.pos = (self.pos + n) % size
        self.count = min(self.count + n, size)

    def mean(self) -> float:
        return float(np.mean(self.values)) if self.count == self.values.size else math.nan


@dataclass(frozen=True)
class FeatureReading:
    """One feature's evaluation: its window, z, and the drift state after it."""

    name: str
    n: int
    mean: float
    z: float
    drifting: bool
    transition: str | None  # "enter" | "exit" | None


@dataclass
class FeatureDriftMonitor:
    """Rings of every feature the flow sees, and each feature's drift state for the serving model."""

    window: int
    threshold: float
    rings: dict[str, FeatureRing] = field(default_factory=dict)
    drifting: dict[str, bool] = field(default_factory=dict)
    reference_version: str | None = None
    last: dict[str, FeatureReading] = field(default_factory=dict)  # the newest reading per feature

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        """Values per feature, rows already in (close_time, symbol) order; NaN = missing."""
        for name, values in columns.items():
            ring = self.rings.get(name)
            if ring is None:
                ring = self.rings[name] = FeatureRing(np.full(self.window, np.nan))
            present = values[~np.isnan(values)]
            if present.size:
                ring.add_many(present)

    def evaluate(self, version: str, reference: Mapping[str, tuple[float, float]]) -> list[FeatureReading]:
        """z of every feature with a full window and a usable (μ, σ) of ``version``'s training.

        A new reference version starts with no feature drifting (its own training statistics)."""
        if version != self.reference_version:
            self.reference_version, self.drifting, self.last = version, {}, {}
        readings = []
        for name, (mu, sigma) in reference.items():
            ring = self.rings.get(name)
            if ring is None or ring.count < self.window or not sigma:
                continue
            mean = ring.mean()
            z = z_score(mean, ring.count, mu, sigma)
            was = self.drifting.get(name, False)
            now = abs(z) >= self.threshold if not was else abs(z) >= REARM * self.threshold
            self.drifting[name] = now
            transition = "enter" if now and not was else "exit" if was and not now else None
            reading = FeatureReading(name, ring.count, mean, z, now, transition)
            self.last[name] = reading
            readings.append(reading)
        return readings


def reference_of(metadata: Mapping[str, object]) -> dict[str, tuple[float, float]]:
    """``{feature: (μ_train, σ_train)}`` of a model's metadata, features without a usable σ left out."""
    mean = metadata.get("train_mean") or {}
    std = metadata.get("train_std") or {}
    assert isinstance(mean, Mapping) and isinstance(std, Mapping)
    out = {}
    for name in metadata.get("feature_names") or []:  # type: ignore[attr-defined]
        mu, sigma = mean.get(name), std.get(name)
        if mu is not None and sigma:
            out[str(name)] = (float(mu), float(sigma))
    return out
