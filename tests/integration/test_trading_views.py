"""The trading views of migration 005 (issue 20): `daily_pnl` and `open_positions`, against
the real engine (chdb) and an independent pandas oracle.

The rows are the trading engine's own (dataflows/trading) over 3 UTC days x 24 symbols of
1-minute bars for two accounts with different settings, written to the store twice the way a
replay or a crash-restart writes them (the second time with merges stopped, so FINAL has
something to do). The oracle never reads the store or calls a view: it takes the engine's
records in memory, keeps the newest version of each natural key as ReplacingMergeTree's FINAL
would, and computes each day's PnL and each open position's latest mark with pandas.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataflows.trading.engine import Engine, TradingOut
from dataflows.trading.items import TradeBar
from tests.api.test_trading_api import store_out
from tests.dataflows.trading.bars import config, run_steps
from tickcast.store import Store

MIN = 60_000
DAY = 86_400_000
START = 1_763_683_200_000  # 2025-11-21 00:00 UTC
SYMBOLS = [f"S{i:02d}USDT" for i in range(24)]
_counter = itertools.count()


def market(seed: int, days: int = 3) -> list[TradeBar]:
    """Random-walk 1-minute bars with noisy probabilities that sometimes lead the next return."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    bars = []
    for k, symbol in enumerate(SYMBOLS):
        ret = rng.normal(0, 0.002, n)
        close = 50.0 * (1 + k / 10) * np.exp(np.cumsum(ret))
        open_ = np.concatenate(([close[0]], close[:-1])) * np.exp(rng.normal(0, 0.0003, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.001, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.001, n)))
        lead = np.concatenate((ret[1:], [0.0]))
        prob = 1 / (1 + np.exp(-(300 * lead * (rng.random(n) < 0.6) + rng.normal(0, 0.35, n))))
        for i in range(n):
            t = START + (i + 1) * MIN
            bars.append(TradeBar(symbol, t, open_[i], high[i], low[i], close[i], 0.002, prob[i], "m1", ""))
    return bars


ACCOUNTS = {
    "paper": dict(base_size=400.0, max_concurrent=6, atr_stop=2.0, atr_take_profit=3.0, fee_taker=0.001, exit=0.4),
    "backtest": dict(base_size=900.0, max_concurrent=3, atr_stop=1.0, slippage_bps=2.0, fee_taker=0.0005, exit=0.45),
}


@pytest.fixture(scope="module")
def traded(chdb_dir: Path) -> Iterator[tuple[Store, dict[str, TradingOut]]]:
    store = Store(f"chdb://{chdb_dir}", database=f"tviews{os.getpid()}_{next(_counter)}")
    store.migrate()
    bars = market(seed=16)
    outs = {}
    for account, kw in ACCOUNTS.items():
        out = run_steps(Engine(config(account=account, max_holding_ms=90 * MIN, **kw)), bars)
        outs[account] = out
        store_out(store, out)
    for table in ("equity", "fills", "positions"):  # the replay's second write stays unmerged
        store.command(f"SYSTEM STOP MERGES {{db}}.{table}")
    for out in outs.values():
        store_out(store, out)
    yield store, outs
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


def _final(records: list, key: list[str], version: str | None = None) -> pd.DataFrame:
    """What FINAL keeps: per key the row with the largest version (the last written on ties)."""
    df = pd.DataFrame([r.row() for r in records])
    if version is not None:
        df = df.sort_values(version, kind="stable")
    return df.drop_duplicates(key, keep="last").reset_index(drop=True)


def _oracle_daily(out: TradingOut, account: str) -> pd.DataFrame:
    eq = _final([r for r in out.equity if r.symbol == ""], ["account", "symbol", "ts"]).sort_values("ts")
    eq["day"] = pd.to_datetime(eq["ts"], unit="ms", utc=True).dt.date
    days = eq.groupby("day").agg(
        end_equity=("equity", "last"),
        first_day_start=("day_start_equity", "first"),
        realized_end=("realized_pnl", "last"),
        fees_end=("fees", "last"),
        max_drawdown=("drawdown", "max"),
        closes=("ts", "size"),
    )
    days["start_equity"] = days["end_equity"].shift(1).fillna(days["first_day_start"].iloc[0])
    days["pnl"] = days["end_equity"] - days["start_equity"]
    days["realized_pnl"] = days["realized_end"].diff().fillna(days["realized_end"].iloc[0])
    days["fees"] = days["fees_end"].diff().fillna(days["fees_end"].iloc[0])
    fills = _final(out.fills, ["account", "symbol", "fill_time", "intent"])
    fills["day"] = pd.to_datetime(fills["fill_time"], unit="ms", utc=True).dt.date
    days["fills"] = fills.groupby("day").size().reindex(days.index, fill_value=0)
    pos = _final(out.positions, ["account", "symbol", "opened_at"], "updated_at")
    closed = pos[pos["status"] == "closed"].copy()
    closed["day"] = pd.to_datetime(closed["closed_at"], unit="ms", utc=True).dt.date
    days["closed_trades"] = closed.groupby("day").size().reindex(days.index, fill_value=0)
    days["account"] = account
    return days.reset_index()


def test_the_data_spans_days_symbols_and_both_accounts(traded) -> None:
    store, outs = traded
    for account, out in outs.items():
        assert len({r.symbol for r in out.fills}) >= 20, account
        assert {r.reason for r in out.fills} >= {"entry", "exit", "stop"}, account
    unmerged = store.scalar("SELECT count() FROM {db}.equity") - store.scalar("SELECT count() FROM {db}.equity FINAL")
    assert unmerged > 0  # the second write is there, unmerged: without FINAL a view would count it twice


def test_daily_pnl_equals_the_pandas_oracle(traded) -> None:
    store, outs = traded
    view = store.df("SELECT * FROM {db}.daily_pnl ORDER BY account, day")
    assert sorted(view["account"].unique()) == sorted(outs)
    for account, out in outs.items():
        got = view[view["account"] == account].reset_index(drop=True)
        want = _oracle_daily(out, account)
        assert len(got) == len(want) == 4, (account, len(got))  # 3 days and the close at 00:00 of the 4th
        assert [d.isoformat() for d in got["day"]] == [d.isoformat() for d in want["day"]]
        for col in ("start_equity", "end_equity", "pnl", "realized_pnl", "fees", "max_drawdown"):
            np.testing.assert_allclose(
                got[col].to_numpy(float), want[col].to_numpy(float), rtol=0, atol=1e-9, err_msg=col
            )
        for col in ("fills", "closed_trades", "closes"):
            assert got[col].tolist() == want[col].tolist(), (account, col)
        np.testing.assert_allclose(got["return"], want["pnl"] / want["start_equity"], atol=1e-12)
        # the days chain: each day starts where the previous one ended; the sum is the account's PnL
        assert got["start_equity"].iloc[0] == pytest.approx(10_000.0)
        final_equity = [r.equity for r in out.equity if r.symbol == ""][-1]
        assert got["pnl"].sum() == pytest.approx(final_equity - 10_000.0, abs=1e-9)


def test_open_positions_equal_the_pandas_oracle(traded) -> None:
    store, outs = traded
    view = store.df("SELECT * FROM {db}.open_positions ORDER BY account, symbol")
    for account, out in outs.items():
        pos = _final(out.positions, ["account", "symbol", "opened_at"], "updated_at")
        open_ = pos[pos["status"] == "open"].sort_values("symbol").reset_index(drop=True)
        marks = _final([r for r in out.equity if r.symbol], ["account", "symbol", "ts"])
        marks = marks[marks["position_qty"] != 0]
        got = view[view["account"] == account].reset_index(drop=True)
        assert got["symbol"].tolist() == open_["symbol"].tolist() and len(got) >= 1, account
        for i, p in open_.iterrows():
            mine = marks[(marks["symbol"] == p["symbol"]) & (marks["ts"] >= p["opened_at"])].sort_values("ts")
            last = mine.iloc[-1]
            row = got.iloc[i]
            assert int(row["opened_at"].timestamp() * 1000) == p["opened_at"]
            assert int(row["marked_at"].timestamp() * 1000) == last["ts"]
            for col, want in (
                ("qty", p["qty"]),
                ("entry_price", p["entry_price"]),
                ("mark_price", last["mark_price"]),
                ("unrealized_pnl", last["unrealized_pnl"]),
                ("exposure", last["exposure"]),
            ):
                assert math.isclose(row[col], want, rel_tol=0, abs_tol=1e-9), (account, p["symbol"], col)
            # the mark's unrealized PnL is the position's, recomputed here from its own numbers
            side = 1 if p["side"] == "long" else -1
            assert row["unrealized_pnl"] == pytest.approx(side * p["qty"] * (last["mark_price"] - p["entry_price"]))
