"""Strategy, broker and sizing rules: the formulas, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from dataflows.trading import broker, strategy
from dataflows.trading.engine import Engine
from dataflows.trading.sizing import TradeStats, entry_notional
from tests.dataflows.trading.bars import MIN, T0, bar, config, run_steps


def test_entry_and_exit_thresholds() -> None:
    cfg = config(entry=0.6, exit=0.45)
    assert strategy.entry_side(0.6, cfg) == 1 and strategy.entry_side(0.59, cfg) == 0
    assert strategy.entry_side(0.1, cfg) == 0  # long-only by default
    assert strategy.entry_side(0.4, config(entry=0.6, exit=0.45, allow_short=True)) == -1
    assert strategy.signal_exit(1, 0.45, cfg) and not strategy.signal_exit(1, 0.46, cfg)
    assert strategy.signal_exit(-1, 0.55, cfg) and not strategy.signal_exit(-1, 0.54, cfg)


def test_levels_from_atr() -> None:
    cfg = config(atr_stop=2.0, atr_take_profit=3.0)
    assert strategy.protective_levels(1, 200.0, 0.01, cfg) == pytest.approx((196.0, 206.0))
    assert strategy.protective_levels(-1, 200.0, 0.01, cfg) == pytest.approx((204.0, 194.0))
    stop, target = strategy.protective_levels(1, 200.0, 0.01, config(atr_stop=None, atr_take_profit=None))
    assert math.isnan(stop) and math.isnan(target)


@pytest.mark.parametrize(
    "side, o, h, lo, expected",
    [
        (1, 100, 101, 99, None),
        (1, 100, 106, 99, ("target", 105.0)),
        (1, 100, 106, 94, ("stop", 95.0)),  # both inside the candle: the stop wins
        (1, 93, 94, 92, ("stop", 93.0)),  # gapped through the stop: the open
        (1, 107, 108, 106, ("target", 107.0)),  # opened beyond the target: the (better) open
        (-1, 100, 104, 96, None),
        (-1, 100, 106, 94, ("stop", 105.0)),
        (-1, 107, 108, 106, ("stop", 107.0)),
        (-1, 93, 94, 92, ("target", 93.0)),
    ],
)
def test_intrabar_exits(side: int, o: float, h: float, lo: float, expected: tuple[str, float] | None) -> None:
    stop, target = (95.0, 105.0) if side == 1 else (105.0, 95.0)
    assert strategy.intrabar_exit(side, stop, target, o, h, lo, opened_at_this_open=False) == expected


def test_a_position_opened_at_this_open_fills_at_its_level() -> None:
    assert strategy.intrabar_exit(1, 101.0, math.nan, 100, 102, 99, opened_at_this_open=True) == ("stop", 101.0)


def test_fill_prices_and_fees() -> None:
    assert broker.slipped(100.0, True, 5.0) == pytest.approx(100.05)
    assert broker.slipped(100.0, False, 5.0) == pytest.approx(99.95)
    assert broker.slippage_vs_reference(100.05, 100.0, True) == pytest.approx(5.0)
    assert broker.slippage_vs_reference(99.0, 100.0, False) == pytest.approx(100.0)
    taker, mixed = config(fee_taker=0.001, fee_maker=0.0002), config(fee_mode="mixed", fee_maker=0.0002)
    assert broker.fee_rate("market", taker) == 0.001 and broker.fee_rate("limit", taker) == 0.001
    assert broker.fee_rate("limit", mixed) == 0.0002 and broker.fee_rate("stop", mixed) == mixed.fee_taker
    assert broker.fee_rate("market", config(fee_mode="maker", fee_maker=0.0003)) == 0.0003


def test_kelly_sizing() -> None:
    cfg = config(sizing="kelly", kelly_fraction=0.5, kelly_cap=0.1, kelly_min_trades=4, base_size=123.0)
    stats = TradeStats()
    assert entry_notional(cfg, 0.6, 10_000.0, stats) == 123.0  # no realised ratio yet: the base size
    for pnl in (20.0, 20.0, -10.0, -10.0):
        stats.add(pnl)
    # b = 20/10 = 2, f* = 0.6 - 0.4/2 = 0.4, half Kelly 0.2, capped at 0.1 of equity
    assert entry_notional(cfg, 0.6, 10_000.0, stats) == pytest.approx(1_000.0)
    assert entry_notional(cfg, 0.4, 10_000.0, stats) == pytest.approx(10_000 * 0.5 * (0.4 - 0.6 / 2))
    assert entry_notional(cfg, 0.3, 10_000.0, stats) == 0.0  # no edge
    assert entry_notional(config(base_size=50.0), 0.9, 10_000.0, stats) == 50.0


def test_a_round_trip_by_hand() -> None:
    """Decision at T on p=0.7 -> buy at T+1's open + 10 bps, fee 0.1 %; exit decided at T+2 on p=0.4
    -> sell at T+3's open - 10 bps."""
    cfg = config(entry=0.6, exit=0.45, slippage_bps=10.0, fee_taker=0.001, base_size=1_000.0)
    engine = Engine(cfg)
    bars = [
        bar("A", T0 + MIN, o=99, c=100, p=0.7),
        bar("A", T0 + 2 * MIN, o=100, c=102, p=0.5),
        bar("A", T0 + 3 * MIN, o=102, c=104, p=0.4),
        bar("A", T0 + 4 * MIN, o=105, c=103, p=0.5),
    ]
    out = run_steps(engine, bars)
    entry, exit_ = out.fills
    assert (entry.side, entry.fill_time, entry.decision_time) == ("buy", T0 + MIN, T0 + MIN)
    assert entry.price == pytest.approx(100 * 1.001) and entry.notional == pytest.approx(1_000.0)
    assert entry.qty == pytest.approx(1_000 / 100.1) and entry.fee == pytest.approx(1.0)
    assert entry.slippage_bps == pytest.approx(10.0)  # vs the decision close 100
    assert (exit_.side, exit_.reason, exit_.fill_time) == ("sell", "exit", T0 + 3 * MIN)
    assert exit_.price == pytest.approx(105 * 0.999)
    pnl = entry.qty * (105 * 0.999 - 100.1)
    assert exit_.realized_pnl == pytest.approx(pnl) and exit_.fee == pytest.approx(entry.qty * 105 * 0.999 * 0.001)
    final = [e for e in out.equity if e.symbol == ""][-1]
    assert final.equity == pytest.approx(10_000 + pnl - entry.fee - exit_.fee)
    assert final.open_positions == 0 and engine.state.portfolio.positions == {}
