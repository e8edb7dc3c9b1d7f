"""Drift state machine driven by scripted ΔECE sequences.

Expected outcomes are derived by hand from the rules in DESIGN §6 with the seed
defaults: abs 0.10, rel 0.8, streak triggers 5, strong at ΔECE ≥ 0.25, EMA α = 0.3,
enter 0.12, exit 0.08, cooldown 21600 s, gates Brier +0.02 / PR-AUC −0.05, min 200.
Values are chosen away from every threshold so float rounding cannot decide a case.
"""

from __future__ import annotations

import json
import pickle

import pytest

from models.drift import DriftConfig, DriftState, drift_step

STEP_MS = 300_000  # one evaluation every 5 minutes


class Monitor:
    """Keeps one version's state between windows, as the model stage does (`ModelState.drift`)."""

    def __init__(self, config: DriftConfig | None = None, state: DriftState | None = None) -> None:
        self.config = config or DriftConfig()
        self.state = state or DriftState()

    def step(self, ts_ms, **window):
        self.state, decision = drift_step(self.config, self.state, ts_ms, **window)
        return decision


def feed(
    monitor,
    deltas,
    *,
    ece_prod=0.20,
    n=500,
    t0=0,
    brier=(0.20, 0.20),
    prauc=(0.70, 0.70),
    times=None,
):
    """Run one window per ΔECE; brier/prauc are (live, prod)."""
    out = []
    for i, d in enumerate(deltas):
        ts = times[i] if times is not None else t0 + i * STEP_MS
        out.append(
            monitor.step(
                ts,
                n=n,
                ece_live=ece_prod + d,
                ece_prod=ece_prod,
                brier_live=brier[0],
                brier_prod=brier[1],
                pr_auc_live=prauc[0],
                pr_auc_prod=prauc[1],
            )
        )
    return out


def test_abs_streak_reaching_trigger_turns_drift_on():
    # ΔECE 0.15 > 0.10 (abs) but 0.15/0.20 = 0.75 ≤ 0.8 (no rel); EMA stays 0.15 ≥ 0.12
    ds = feed(Monitor(), [0.15] * 5)
    assert [d.abs_breach for d in ds] == [True] * 5
    assert [d.rel_breach for d in ds] == [False] * 5
    assert [d.abs_streak for d in ds] == [1, 2, 3, 4, 5]
    assert [d.rel_streak for d in ds] == [0] * 5
    assert [d.drift_on for d in ds] == [False, False, False, False, True]
    assert [d.transition for d in ds] == [None, None, None, None, "enter"]
    assert [d.recommendation for d in ds] == [None, None, None, None, "recalibrate"]
    assert ds[-1].cooldown_remaining_s == 21600
    assert not any(d.strong for d in ds)


def test_streak_resets_on_a_window_without_breach():
    ds = feed(Monitor(), [0.15, 0.15, 0.15, 0.15, 0.05, 0.15])
    assert [d.abs_streak for d in ds] == [1, 2, 3, 4, 0, 1]
    assert not any(d.drift_on for d in ds)


def test_streak_without_ema_above_enter_does_not_turn_on():
    # ece_prod 0.05, ΔECE 0.06: rel breach (1.2 > 0.8) every time, EMA 0.06 < 0.12
    ds = feed(Monitor(), [0.06] * 7, ece_prod=0.05)
    assert [d.rel_streak for d in ds] == [1, 2, 3, 4, 5, 6, 7]
    assert [d.abs_breach for d in ds] == [False] * 7
    assert not any(d.drift_on for d in ds)


def test_rel_streak_trigger():
    cfg = DriftConfig(rel_streak_trigger=3, abs_streak_trigger=10)
    # ΔECE 0.15 on ece_prod 0.05: rel 3.0 > 0.8 and abs 0.15 > 0.10; only rel reaches its trigger
    ds = feed(Monitor(cfg), [0.15] * 3, ece_prod=0.05)
    assert [d.rel_streak for d in ds] == [1, 2, 3]
    assert [d.drift_on for d in ds] == [False, False, True]


def test_strong_jump_enters_at_once():
    ds = feed(Monitor(), [0.30], ece_prod=0.05)
    (d,) = ds
    assert d.strong and d.abs_streak == 1 and d.delta_ece_ema == pytest.approx(0.30)
    assert (d.drift_on, d.transition, d.recommendation) == (
        True,
        "enter",
        "recalibrate",
    )


def test_strong_jump_needs_the_ema_too():
    # EMA: 0, 0, 0, then 0.3·0.30 = 0.09 (< 0.12, strong but held off), then 0.09 + 0.7·0.09 = 0.153
    ds = feed(Monitor(), [0.0, 0.0, 0.0, 0.30, 0.30], ece_prod=0.05)
    assert [d.strong for d in ds] == [False, False, False, True, True]
    assert ds[3].delta_ece_ema == pytest.approx(0.09)
    assert ds[4].delta_ece_ema == pytest.approx(0.153)
    assert [d.drift_on for d in ds] == [False, False, False, False, True]


def test_hysteresis_holds_between_exit_and_enter_then_exits():
    # EMA after 0.30 then 0.05s: 0.30, 0.225, 0.1725, 0.13575, 0.110025, 0.0920175, 0.07941225
    ds = feed(Monitor(), [0.30] + [0.05] * 6, ece_prod=0.05)
    want = [0.30, 0.225, 0.1725, 0.13575, 0.110025, 0.0920175, 0.07941225]
    assert [d.delta_ece_ema for d in ds] == pytest.approx(want)
    assert [d.drift_on for d in ds] == [True] * 6 + [False]
    assert [d.transition for d in ds] == ["enter"] + [None] * 5 + ["exit"]
    assert 0.08 < ds[4].delta_ece_ema < 0.12 and ds[4].drift_on  # held ON below enter


def test_off_state_holds_between_exit_and_enter():
    # After the exit above, ΔECE 0.09 with no breach streak keeps drift OFF
    m = Monitor()
    feed(m, [0.30] + [0.05] * 6, ece_prod=0.05)
    ds = feed(m, [0.09] * 3, ece_prod=0.20, t0=10 * STEP_MS)
    assert not any(d.drift_on for d in ds)
    assert [d.transition for d in ds] == [None] * 3


def test_cooldown_suppresses_then_allows_a_second_recommendation():
    times = [0, 300_000, 21_599_000, 21_600_000, 21_900_000]
    ds = feed(Monitor(), [0.30] * 5, ece_prod=0.05, times=times)
    assert [d.drift_on for d in ds] == [True] * 5
    assert [d.recommendation for d in ds] == [
        "recalibrate",
        None,
        None,
        "recalibrate",
        None,
    ]
    assert [d.cooldown_remaining_s for d in ds] == pytest.approx([21600, 21300, 1, 21600, 21300])


def test_no_recommendation_while_off():
    ds = feed(Monitor(), [0.15] * 4)
    assert all(d.recommendation is None and d.cooldown_remaining_s == 0 for d in ds)


@pytest.mark.parametrize(
    ("brier", "prauc", "want"),
    [
        ((0.21, 0.20), (0.68, 0.70), "recalibrate"),  # Brier +0.01, PR-AUC −0.02: holds
        ((0.23, 0.20), (0.70, 0.70), "retrain_recommended"),  # Brier +0.03 ≥ 0.02
        ((0.20, 0.20), (0.60, 0.70), "retrain_recommended"),  # PR-AUC −0.10 ≥ 0.05
        ((0.18, 0.20), (0.75, 0.70), "recalibrate"),  # better on both
        # a missing PR-AUC is not a degradation
        ((0.20, 0.20), (None, 0.70), "recalibrate"),
    ],
)
def test_performance_gate_chooses_the_recommendation(brier, prauc, want):
    (d,) = feed(Monitor(), [0.30], ece_prod=0.05, brier=brier, prauc=prauc)
    assert d.recommendation == want


def test_min_samples_skip_leaves_state_unchanged():
    m = Monitor()
    feed(m, [0.15] * 4)
    before = m.state
    (skipped,) = feed(m, [0.40], n=199, t0=4 * STEP_MS)
    assert skipped.skipped_reason == "too_few_samples"
    assert (skipped.abs_streak, skipped.drift_on, skipped.recommendation) == (
        4,
        False,
        None,
    )
    assert m.state == before
    (d,) = feed(m, [0.15], n=200, t0=5 * STEP_MS)  # the streak continues: 5th breach
    assert d.skipped_reason is None and d.abs_streak == 5 and d.transition == "enter"


def test_missing_ece_is_skipped():
    m = Monitor()
    d = m.step(
        0,
        n=500,
        ece_live=None,
        ece_prod=0.05,
        brier_live=None,
        brier_prod=0.2,
        pr_auc_live=None,
        pr_auc_prod=0.7,
    )
    assert d.skipped_reason == "missing_ece" and m.state == DriftState()


def test_zero_ece_prod_rel_breach_is_any_increase():
    ds = feed(Monitor(), [0.01, 0.0, -0.0], ece_prod=0.0)
    assert [d.rel_breach for d in ds] == [True, False, False]


def test_persistence_round_trip_continues_identically():
    deltas = [0.15, 0.15, 0.15, 0.30, 0.05, 0.05, 0.05]
    straight = Monitor()
    want = feed(straight, deltas)
    resumed = Monitor()
    got = feed(resumed, deltas[:3])
    resumed = Monitor(None, DriftState.from_dict(json.loads(json.dumps(resumed.state.to_dict()))))
    resumed = pickle.loads(pickle.dumps(resumed))
    got += feed(resumed, deltas[3:], t0=3 * STEP_MS)
    assert got == want
    assert resumed.state == straight.state


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown DriftState field"):
        DriftState.from_dict({"abs_streak": 1, "bogus": 2})


def test_config_validation():
    with pytest.raises(ValueError, match="hysteresis_exit must be <= hysteresis_enter"):
        DriftConfig(hysteresis_enter=0.05, hysteresis_exit=0.08)
    with pytest.raises(ValueError, match="ema_alpha must be in"):
        DriftConfig(ema_alpha=0.0)
    with pytest.raises(ValueError, match="abs_streak_trigger must be >= 1"):
        DriftConfig(abs_streak_trigger=0)
