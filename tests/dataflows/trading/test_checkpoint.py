"""The engine state's text form (dataflows/trading/checkpoint.py): what a restart reads back
must be the state, field for field, so going on from it gives what going on from the live
state gives."""

from __future__ import annotations

import math

import pytest

from dataflows.trading import checkpoint
from dataflows.trading.engine import Engine, TradingOut, candle_steps
from tests.dataflows.trading.test_ordering import CFG, dataset


def test_text_round_trip_and_going_on_from_it_equals_going_on_from_the_state() -> None:
    bars, controls = dataset(3)  # positions, pending orders, stops (NaN when none), guards tripped
    bars = sorted(bars, key=lambda b: (b.close_time, b.symbol))
    steps = list(candle_steps(bars, controls))
    engine = Engine(CFG)
    texts = []
    for k, (due, t, group) in enumerate(steps):
        for control in due:
            engine.apply_control(control, TradingOut())
        if t is not None:
            engine.step(t, list(group), TradingOut())
        if k % 7 == 3:
            text = checkpoint.to_text(engine.state)
            assert checkpoint.to_text(checkpoint.from_text(text)) == text  # every field survives
            texts.append((k, text))
    seen_nan_stop = any(
        any(math.isnan(p.stop) for p in checkpoint.from_text(text).portfolio.positions.values()) for _, text in texts
    )
    assert seen_nan_stop or any(checkpoint.from_text(text).portfolio.positions for _, text in texts)
    assert any(checkpoint.from_text(text).guards.kill_switch.active for _, text in texts)
    final = checkpoint.to_text(engine.state)
    for k, text in texts:  # going on from each checkpoint read back ends in the same state
        resumed = Engine(CFG, checkpoint.from_text(text))
        for due, t, group in steps[k + 1 :]:
            for control in due:
                resumed.apply_control(control, TradingOut())
            if t is not None:
                resumed.step(t, list(group), TradingOut())
        assert checkpoint.to_text(resumed.state) == final


def test_a_checkpoint_is_due_at_the_first_candle_time_of_each_hour() -> None:
    hour = checkpoint.EVERY_MS
    assert checkpoint.due(0, 5 * hour + 60_000)
    assert not checkpoint.due(5 * hour + 60_000, 5 * hour + 120_000)
    assert checkpoint.due(5 * hour + 59 * 60_000, 6 * hour)  # a candle closing on the hour starts it
    assert checkpoint.due(5 * hour, 9 * hour + 60_000)  # a gap of hours: one checkpoint


@pytest.mark.parametrize("text", ["{}", '{"portfolio": {}}', "[]", "not json"])
def test_text_that_is_not_a_state_raises_what_the_reader_catches(text: str) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        checkpoint.from_text(text)
