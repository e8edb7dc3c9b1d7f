"""Backtest metrics from the trading records (pure pandas/numpy).

Inputs are the rows of one account: the portfolio's equity rows (one per candle close),
its fills and its positions. Definitions:

    total_return    final equity / starting equity - 1
    sharpe          mean / std (ddof 1) of the per-candle equity returns x sqrt(candles per year)
    max_drawdown    max over closes of 1 - equity / running peak (the peak starts at the starting equity)
    hit_rate        closed positions with net PnL (realized - fees) > 0 / closed positions
    profit_factor   sum of winning net PnL / |sum of losing net PnL| (None without a loss)
    fees            sum of fill fees;  turnover = sum of fill notionals / starting equity
    exposure_time   share of candle closes with at least one open position
    per_symbol      net PnL (closed: realized - fees; open: + unrealized - entry fee), trades, hit rate
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from dataflows.trading.items import FillRecord, PositionRecord

YEAR_MS = 365 * 86_400_000


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def summarize(
    equity: pd.DataFrame,
    fills: pd.DataFrame,
    positions: pd.DataFrame,
    *,
    starting_equity: float,
    interval_ms: int,
) -> dict[str, Any]:
    """The report of one account; `equity` holds its portfolio rows (symbol "")."""
    eq = equity.sort_values("ts")
    values = eq["equity"].to_numpy(dtype=float)
    final = float(values[-1]) if len(values) else starting_equity
    returns = np.diff(np.concatenate([[starting_equity], values])) / np.concatenate([[starting_equity], values[:-1]])
    sd = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
    sharpe = float(np.mean(returns)) / sd * math.sqrt(YEAR_MS / interval_ms) if sd > 0 else None
    peaks = np.maximum.accumulate(np.concatenate([[starting_equity], values]))[1:]
    max_dd = float(np.max(1.0 - values / peaks)) if len(values) else 0.0
    closed = positions[positions["status"] == "closed"] if len(positions) else positions
    net = (closed["realized_pnl"] - closed["fees"]).to_numpy(dtype=float) if len(closed) else np.array([])
    wins, losses = net[net > 0], net[net <= 0]
    per_symbol = _per_symbol(positions)
    holding = (
        (pd.to_numeric(closed["closed_at"]) - pd.to_numeric(closed["opened_at"])).mean() / 60_000
        if len(closed)
        else None
    )
    return {
        "start": int(eq["ts"].min()) if len(eq) else None,
        "end": int(eq["ts"].max()) if len(eq) else None,
        "candles": len(eq),
        "starting_equity": starting_equity,
        "final_equity": final,
        "total_return": final / starting_equity - 1.0,
        "sharpe": _num(sharpe),
        "max_drawdown": max_dd,
        "trades": int(len(closed)),
        "open_positions": int((positions["status"] == "open").sum()) if len(positions) else 0,
        "hit_rate": _num(len(wins) / len(net)) if len(net) else None,
        "profit_factor": _num(wins.sum() / -losses.sum()) if len(losses) and losses.sum() < 0 else None,
        "net_pnl": float(net.sum()),
        "fees": float(fills["fee"].sum()) if len(fills) else 0.0,
        "turnover": float(fills["notional"].sum()) / starting_equity if len(fills) else 0.0,
        "exposure_time": float((eq["open_positions"] > 0).mean()) if len(eq) else 0.0,
        "avg_holding_minutes": _num(holding),
        "fills_by_reason": {str(k): int(v) for k, v in fills["reason"].value_counts().items()} if len(fills) else {},
        "per_symbol": per_symbol,
    }


def _per_symbol(positions: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not len(positions):
        return out
    closed = positions[positions["status"] == "closed"]
    for symbol, group in closed.groupby("symbol"):
        net = (group["realized_pnl"] - group["fees"]).to_numpy(dtype=float)
        out[str(symbol)] = {
            "net_pnl": float(net.sum()),
            "trades": len(net),
            "hit_rate": float((net > 0).mean()),
            "fees": float(group["fees"].sum()),
        }
    return dict(sorted(out.items()))


def frames_from_records(out: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(portfolio equity, fills, positions) from an in-memory `TradingOut` (latest position versions)."""
    equity = pd.DataFrame([r.row() for r in out.equity if r.symbol == ""])
    fills = pd.DataFrame([r.row() for r in out.fills], columns=list(_FILL_COLUMNS))
    positions = pd.DataFrame([r.row() for r in out.positions], columns=list(_POSITION_COLUMNS))
    if len(positions):
        positions = positions.drop_duplicates(["symbol", "opened_at"], keep="last")
    if not len(equity):
        equity = pd.DataFrame(columns=["ts", "equity", "open_positions"])
    return equity, fills, positions


def _iso(ms: Any) -> str:
    from datetime import UTC, datetime

    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def table(report: dict[str, Any]) -> str:
    """The report as a small text table (what `tickcast backtest` prints)."""

    def pct(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.2f} %"

    def num(x: Any, fmt: str = ".2f") -> str:
        return "-" if x is None else format(x, fmt)

    rows = [
        ("span", f"{_iso(report.get('start'))} .. {_iso(report.get('end'))} ({report.get('candles')} closes)"),
        ("total return", pct(report["total_return"])),
        ("annualised Sharpe", num(report["sharpe"])),
        ("max drawdown", pct(report["max_drawdown"])),
        ("trades (closed)", str(report["trades"])),
        ("hit rate", pct(report["hit_rate"])),
        ("profit factor", num(report["profit_factor"])),
        ("net PnL", num(report["net_pnl"])),
        ("fees paid", num(report["fees"])),
        ("turnover", f"{num(report['turnover'])} x equity"),
        ("exposure time", pct(report["exposure_time"])),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if report.get("per_symbol"):
        lines.append("per symbol (net PnL, trades, hit rate):")
        for symbol, s in report["per_symbol"].items():
            lines.append(f"  {symbol:<14} {s['net_pnl']:>12.2f} {s['trades']:>6} {100 * s['hit_rate']:>7.1f} %")
    return "\n".join(lines)


_FILL_COLUMNS = FillRecord._fields
_POSITION_COLUMNS = PositionRecord._fields
