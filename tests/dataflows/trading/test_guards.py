"""Risk guards on scripted sequences and on random predictions (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.trading.engine import Engine, TradingOut
from dataflows.trading.guards import day_of
from dataflows.trading.items import TradeControl
from tests.dataflows.trading.bars import MIN, T0, bar, config, run_steps

LATE = T0 - 3_600_000 + 30 * MIN  # 2025-11-20 23:30 UTC


def losing_trades(n: int, start: int, symbol: str = "A") -> list:
    """Each trade: a decision bar (p=0.9, close 100), then a bar that opens at 100 and dips to 92,
    through the stop at 93 (ATR 0.07 x 1): a loss of 7 % of the notional."""
    bars = []
    t = start
    for _ in range(n):
        bars.append(bar(symbol, t, o=100, c=100, p=0.9, atr=0.07))
        bars.append(bar(symbol, t + MIN, o=100, h=100, lo=92, c=95, p=0.5, atr=0.07))
        t += 2 * MIN
    return bars


def test_daily_loss_cap_trips_at_the_crossing_fill_and_blocks_until_the_next_day() -> None:
    cfg = config(atr_stop=1.0, base_size=1_000.0, daily_loss_cap=0.03)  # 300 of 10,000; each loss is 70
    engine = Engine(cfg)
    out = run_steps(engine, losing_trades(20, LATE))
    stops = [f for f in out.fills if f.reason == "stop"]
    assert all(f.price == pytest.approx(93.0) for f in stops)
    trips = [r for r in out.risk if r.guard == "daily_loss" and r.kind == "trip"]
    assert len(trips) == 1
    # four losses (-280) stay inside the cap; the fifth stop fill (-350) crosses it
    assert trips[0].ts == stops[4].fill_time
    assert trips[0].value == pytest.approx(350 / 10_000)
    first_day = day_of(stops[4].fill_time, "UTC")
    later = [o for o in out.orders if o.intent == "entry" and o.decision_time > trips[0].ts]
    assert later and all(day_of(o.decision_time, "UTC") != first_day for o in later)  # none the same day
    assert later[0].status == "pending"  # entries resume on the next day
    refusals = [r for r in out.risk if r.kind == "refusal"]
    assert refusals and all(r.guard == "daily_loss" and day_of(r.ts, "UTC") == first_day for r in refusals)
    assert min(r.ts for r in refusals) > trips[0].ts and out.refusals["daily_loss"] == len(refusals)
    assert any(r.kind == "clear" and r.guard == "daily_loss" for r in out.risk)


def test_the_day_boundary_follows_the_configured_zone() -> None:
    seoul_midnight = int(datetime(2025, 11, 21, 15, 0, tzinfo=UTC).timestamp() * 1000)  # 00:00 KST
    assert day_of(seoul_midnight, "Asia/Seoul") == "2025-11-21"
    assert day_of(seoul_midnight + MIN, "Asia/Seoul") == "2025-11-22"
    assert day_of(seoul_midnight + MIN, "UTC") == "2025-11-21"


def test_drawdown_halts_entries_until_an_admin_reset() -> None:
    cfg = config(atr_stop=1.0, base_size=1_000.0, max_drawdown=0.02)  # 200 below the peak
    engine = Engine(cfg)
    out = run_steps(engine, losing_trades(6, T0))
    trip = next(r for r in out.risk if r.guard == "drawdown" and r.kind == "trip")
    stops = [f for f in out.fills if f.reason == "stop"]
    assert trip.ts == stops[2].fill_time  # -210 after the third loss
    assert not [o for o in out.orders if o.intent == "entry" and o.decision_time > trip.ts]
    assert [r.guard for r in out.risk if r.kind == "refusal"] == ["drawdown"] * 3  # the three decision bars after
    # a new day does not clear it
    out2 = run_steps(engine, losing_trades(2, T0 + 86_400_000))
    assert not out2.orders and [r.guard for r in out2.risk if r.kind == "refusal"] == ["drawdown"] * 2
    reset = TradingOut()
    assert engine.apply_control(TradeControl("r1", "reset_drawdown", T0 + 86_400_000 + 10 * MIN, "ops"), reset)
    assert reset.risk[0].kind == "control" and not engine.state.guards.drawdown.active
    out3 = run_steps(engine, [bar("A", T0 + 86_400_000 + 20 * MIN, p=0.9, atr=0.07)])
    assert out3.orders[0].status == "pending"


def test_kill_switch_halt_resume_flatten() -> None:
    engine = Engine(config(base_size=500.0))
    hold = 0.52  # between the exit (0.50) and entry (0.55) thresholds
    out = run_steps(
        engine, [bar("A", T0, p=0.9), bar("B", T0, p=0.9), bar("A", T0 + MIN, p=hold), bar("B", T0 + MIN, p=hold)]
    )
    assert set(engine.state.portfolio.positions) == {"A", "B"}
    ctl = TradingOut()
    engine.apply_control(TradeControl("h", "halt", T0 + MIN, "ops", "incident"), ctl)
    assert engine.apply_control(TradeControl("h", "halt", T0 + MIN), ctl) is False  # a duplicate id is ignored
    out = run_steps(engine, [bar("C", T0 + 2 * MIN, p=0.9)])
    assert not out.orders and [(r.guard, r.symbol, r.state) for r in out.risk] == [("kill_switch", "C", "halted")]
    engine.apply_control(TradeControl("f", "flatten", T0 + 2 * MIN, "ops"), ctl)
    exits = [o for o in ctl.orders if o.reason == "flatten"]
    assert sorted(o.symbol for o in exits) == ["A", "B"] and all(o.status == "pending" for o in exits)
    out = run_steps(engine, [bar("A", T0 + 3 * MIN, o=101, p=hold), bar("B", T0 + 3 * MIN, o=99, p=hold)])
    assert sorted((f.symbol, f.reason, f.price) for f in out.fills) == [("A", "flatten", 101), ("B", "flatten", 99)]
    assert engine.state.portfolio.positions == {}
    engine.apply_control(TradeControl("r", "resume", T0 + 3 * MIN, "ops"), ctl)
    out = run_steps(engine, [bar("C", T0 + 4 * MIN, p=0.9)])
    assert out.orders[0].status == "pending"
    assert [r.state for r in ctl.risk if r.kind == "control"] == ["halted", "halted", "ok"]


def test_a_gap_beyond_the_slippage_limit_is_refused() -> None:
    engine = Engine(config(max_slippage_bps=50.0))
    out = run_steps(
        engine,
        [
            bar("A", T0, c=100, p=0.9),
            bar("A", T0 + MIN, o=100.6, c=100.6, p=0.5),  # 60 bps gap: refused
            bar("A", T0 + 2 * MIN, c=100, p=0.9),
            bar("A", T0 + 3 * MIN, o=100.4, c=100.4, p=0.5),  # 40 bps: filled
        ],
    )
    assert [(o.decision_time, o.status, o.cause) for o in out.orders if o.status != "pending"] == [
        (T0, "refused", "slippage"),
        (T0 + 2 * MIN, "filled", ""),
    ]
    refusal = next(r for r in out.risk if r.kind == "refusal")
    assert refusal.guard == "slippage" and refusal.value == pytest.approx(60.0)
    assert [f.price for f in out.fills] == [100.4]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    max_concurrent=st.integers(1, 4),
    exposure_cap=st.floats(0.01, 0.2),
    base_size=st.floats(50.0, 1_500.0),
)
def test_random_predictions_never_break_exposure_or_concurrency(
    seed: int, max_concurrent: int, exposure_cap: float, base_size: float
) -> None:
    rng = np.random.default_rng(seed)
    cfg = config(
        max_concurrent=max_concurrent,
        max_symbol_exposure=exposure_cap,
        base_size=base_size,
        atr_stop=1.5,
        atr_take_profit=2.0,
        slippage_bps=3.0,
        fee_taker=0.001,
        max_holding_ms=5 * MIN,
    )
    engine = Engine(cfg)
    symbols = [f"S{i}" for i in range(6)]
    price = dict.fromkeys(symbols, 100.0)
    out = TradingOut()
    for k in range(80):
        t = T0 + k * MIN
        bars = []
        for s in symbols:
            if rng.random() < 0.15:
                continue  # gaps in some symbols' candles
            o = price[s]
            c = o * float(np.exp(rng.normal(0, 0.01)))
            price[s] = c
            bars.append(bar(s, t, o=o, c=c, h=max(o, c) * 1.003, lo=min(o, c) * 0.997, p=float(rng.random()), atr=0.01))
        n_before = len(out.fills)
        engine.step(t, bars, out)
        pf = engine.state.portfolio
        pending_entries = sum(o.intent == "entry" for o in engine.state.pending.values())
        assert len(pf.positions) + pending_entries <= max_concurrent
        portfolio_equity = next(e.equity for e in reversed(out.equity) if e.symbol == "")
        for fill in out.fills[n_before:]:
            assert fill.intent != "entry" or fill.notional <= exposure_cap * equity_at(out, fill.decision_time) + 1e-9
        assert portfolio_equity == pytest.approx(pf.equity())
    refused = {r.guard for r in out.risk if r.kind == "refusal"}
    assert refused <= {"concurrency", "symbol_exposure", "cash", "slippage"}
    assert all(o.cause == "slippage" for o in out.orders if o.status == "refused")  # refused after it was placed


def equity_at(out: TradingOut, t: int) -> float:
    return next(e.equity for e in out.equity if e.symbol == "" and e.ts == t)
