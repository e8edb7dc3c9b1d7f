"""Calibration drift state machine and retrain/recalibrate recommendation (DESIGN §6).

Per evaluation window (``step``), with ``ΔECE = ece_live − ece_prod``:

1. Windows with ``n < min_samples`` (or without an ECE) are skipped: state unchanged.
2. abs breach ``ΔECE > ece_drift_abs``; rel breach ``ΔECE / ece_prod > ece_drift_rel``
   (when ``ece_prod <= 0`` the ratio is undefined and a rel breach is ``ΔECE > 0``).
3. Streaks count consecutive breaches and reset to 0 on a window without one.
4. strong drift ``ΔECE >= ece_drift_abs × abs_delta_multiplier``.
5. ``ema ← ΔECE`` on the first counted window, else ``ema ← α·ΔECE + (1 − α)·ema``.
6. OFF → ON when (abs_streak ≥ abs trigger or rel_streak ≥ rel trigger or strong) and
   ``ema >= hysteresis_enter``; ON → OFF when ``ema <= hysteresis_exit``; otherwise the
   state holds.
7. While ON and ``ts − last_recommendation >= recommend_cooldown_s``: if performance
   degraded (``brier_live − brier_prod >= gate_brier_delta`` or
   ``pr_auc_prod − pr_auc_live >= gate_prauc_delta``; a missing value never counts
   as degraded) → ``retrain_recommended``, else → ``recalibrate``. Emitting a
   recommendation starts the cooldown.

``drift_step`` is the pure transition and the rule's one API; the caller keeps the state (the model stage: ``ModelState.drift``, one per version).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = [
    "DriftConfig",
    "DriftDecision",
    "DriftState",
    "drift_step",
]

Transition = Literal["enter", "exit"]
Recommendation = Literal["retrain_recommended", "recalibrate"]


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds (seed defaults; ``ema_alpha`` and ``gate_prauc_delta`` are ours).

    ``ema_alpha`` = 0.3 weighs the newest window ~30 %: with 5-minute evaluations the
    EMA forgets a window in roughly half an hour, slower than the 5-window streaks.
    """

    ece_drift_abs: float = 0.10
    ece_drift_rel: float = 0.8
    abs_streak_trigger: int = 5
    rel_streak_trigger: int = 5
    abs_delta_multiplier: float = 2.5
    hysteresis_enter: float = 0.12
    hysteresis_exit: float = 0.08
    ema_alpha: float = 0.3
    recommend_cooldown_s: float = 21600
    gate_brier_delta: float = 0.02
    gate_prauc_delta: float = 0.05
    min_samples: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must be in (0, 1]; got {self.ema_alpha!r}")
        if self.hysteresis_exit > self.hysteresis_enter:
            raise ValueError(
                "hysteresis_exit must be <= hysteresis_enter; "
                f"got exit={self.hysteresis_exit!r}, enter={self.hysteresis_enter!r}"
            )
        for name in ("abs_streak_trigger", "rel_streak_trigger"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)!r}")
        for name in ("recommend_cooldown_s", "min_samples", "abs_delta_multiplier"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DriftState:
    """Everything the machine remembers between windows (small, picklable)."""

    abs_streak: int = 0
    rel_streak: int = 0
    delta_ece_ema: float | None = None
    drift_on: bool = False
    last_recommend_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftState:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown DriftState field(s) {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**d)


@dataclass(frozen=True)
class DriftDecision:
    """Outcome of one evaluation window (state fields are the values after the step)."""

    delta_ece: float | None
    abs_breach: bool
    rel_breach: bool
    abs_streak: int
    rel_streak: int
    strong: bool
    delta_ece_ema: float | None
    drift_on: bool
    transition: Transition | None
    recommendation: Recommendation | None
    cooldown_remaining_s: float
    skipped_reason: str | None = None


def _cooldown_remaining(cfg: DriftConfig, state: DriftState, ts_ms: int) -> float:
    if state.last_recommend_ms is None:
        return 0.0
    elapsed_s = (ts_ms - state.last_recommend_ms) / 1000.0
    return max(0.0, cfg.recommend_cooldown_s - elapsed_s)


def _worse_by(worse: float | None, better: float | None, delta: float) -> bool:
    """``worse − better >= delta``; a missing side never counts as degraded."""
    return worse is not None and better is not None and worse - better >= delta


def _degraded(
    cfg: DriftConfig,
    brier_live: float | None,
    brier_prod: float | None,
    pr_auc_live: float | None,
    pr_auc_prod: float | None,
) -> bool:
    return _worse_by(brier_live, brier_prod, cfg.gate_brier_delta) or _worse_by(
        pr_auc_prod, pr_auc_live, cfg.gate_prauc_delta
    )


def _skip(cfg: DriftConfig, state: DriftState, ts_ms: int, delta: float | None, reason: str) -> DriftDecision:
    return DriftDecision(
        delta_ece=delta,
        abs_breach=False,
        rel_breach=False,
        abs_streak=state.abs_streak,
        rel_streak=state.rel_streak,
        strong=False,
        delta_ece_ema=state.delta_ece_ema,
        drift_on=state.drift_on,
        transition=None,
        recommendation=None,
        cooldown_remaining_s=_cooldown_remaining(cfg, state, ts_ms),
        skipped_reason=reason,
    )


def drift_step(
    cfg: DriftConfig,
    state: DriftState,
    ts_ms: int,
    *,
    n: int,
    ece_live: float | None,
    brier_live: float | None,
    pr_auc_live: float | None,
    ece_prod: float | None,
    brier_prod: float | None,
    pr_auc_prod: float | None,
) -> tuple[DriftState, DriftDecision]:
    """One window through the rules in the module docstring: ``(new_state, decision)``.

    The one API of the rule (pure: the caller keeps the state, e.g. the model stage's
    `ModelState.drift` per version, persisted with its snapshot).

    >>> state, d = drift_step(DriftConfig(min_samples=1), DriftState(), 0, n=500, ece_live=0.40,
    ...     brier_live=0.2, pr_auc_live=0.6, ece_prod=0.03, brier_prod=0.2, pr_auc_prod=0.6)
    >>> d.strong, d.transition, d.recommendation, state.drift_on
    (True, 'enter', 'recalibrate', True)
    """
    if ece_live is None or ece_prod is None or math.isnan(ece_live) or math.isnan(ece_prod):
        return state, _skip(cfg, state, ts_ms, None, "missing_ece")
    delta = ece_live - ece_prod
    if n < cfg.min_samples:
        return state, _skip(cfg, state, ts_ms, delta, "too_few_samples")

    abs_breach = delta > cfg.ece_drift_abs
    rel_breach = delta / ece_prod > cfg.ece_drift_rel if ece_prod > 0 else delta > 0
    abs_streak = state.abs_streak + 1 if abs_breach else 0
    rel_streak = state.rel_streak + 1 if rel_breach else 0
    strong = delta >= cfg.ece_drift_abs * cfg.abs_delta_multiplier
    prev = state.delta_ece_ema
    ema = delta if prev is None else cfg.ema_alpha * delta + (1 - cfg.ema_alpha) * prev

    drift_on = state.drift_on
    transition: Transition | None = None
    triggered = abs_streak >= cfg.abs_streak_trigger or rel_streak >= cfg.rel_streak_trigger or strong
    if not drift_on and triggered and ema >= cfg.hysteresis_enter:
        drift_on, transition = True, "enter"
    elif drift_on and ema <= cfg.hysteresis_exit:
        drift_on, transition = False, "exit"

    new = replace(
        state,
        abs_streak=abs_streak,
        rel_streak=rel_streak,
        delta_ece_ema=ema,
        drift_on=drift_on,
    )
    recommendation: Recommendation | None = None
    if drift_on and _cooldown_remaining(cfg, new, ts_ms) <= 0.0:
        if _degraded(cfg, brier_live, brier_prod, pr_auc_live, pr_auc_prod):
            recommendation = "retrain_recommended"
        else:
            recommendation = "recalibrate"
        new = replace(new, last_recommend_ms=int(ts_ms))

    decision = DriftDecision(
        delta_ece=delta,
        abs_breach=abs_breach,
        rel_breach=rel_breach,
        abs_streak=abs_streak,
        rel_streak=rel_streak,
        strong=strong,
        delta_ece_ema=ema,
        drift_on=drift_on,
        transition=transition,
        recommendation=recommendation,
        cooldown_remaining_s=_cooldown_remaining(cfg, new, ts_ms),
    )
    return new, decision
