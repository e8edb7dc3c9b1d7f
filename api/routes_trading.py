"""Trading reads, the live trading stream and the kill switch (docs/design.md §11).

Reads (public, like the other history reads): positions, orders, fills, the equity curve,
each guard's state (`/risk`), a summary, risk events and the latest backtest report. An
account or symbol the store has never seen is a 404 that names the known ones (a typo never
reads as an empty account). Admin commands (halt, resume, flatten, reset-drawdown) are
control records sent through the flow's inputs, like a provider re-enable: the trading stage
applies them in event-time order, records them in `risk_events` (so a backtest of the stored
rows repeats them) and publishes the change on `/stream/trading`. Without `"confirm": true`
they answer 409 with the plan. Every write needs the X-API-Key header and a JSON body; the
commands that add risk or work (resume, reset-drawdown, backtest) share the job-start rate
limit, the ones that remove risk (halt, flatten) never wait for it (docs/decisions.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.known import check_symbols
from api.routes_admin import _take_job_token, start_job
from api.routes_streams import _RESPONSES as STREAM_RESPONSES
from api.routes_streams import PLAIN_PARAMS, _last_id
from api.schemas import ANY, BOOL, INT, JOB_STARTED, MS, NUM, STR, Schema, arr, enum, free_object, nullable, obj
from api.sse import newest_if_ahead, sse_response
from api.validation import NAME_RE, Field, Param, object_schema, parse_query, read_command, spec
from tickcast.records import MAX_TS_MS, MIN_TS_MS

GUARDS = ("kill_switch", "drawdown", "daily_loss", "symbol_exposure", "concurrency", "slippage", "cash", "ordering")
ACCOUNT = Param(
    "account",
    "string",
    pattern=NAME_RE.pattern.strip("^$"),
    max_length=64,
    description="trading account; default TRADING_ACCOUNT (the live flow's, 'paper'); backtests write 'backtest'",
    example="paper",
)
SYMBOL = Param("symbol", "symbol", description="only this symbol", example="XRPUSDT")
START = Param("start", "timestamp", description="from this time (epoch ms or ISO-8601); default: no bound")
END = Param("end", "timestamp", description="before this time (epoch ms or ISO-8601); default: no bound")
LIMIT = Param("limit", "integer", default=500, minimum=1, maximum=10_000, description="newest rows to return")
POSITION_PARAMS = (
    ACCOUNT,
    SYMBOL,
    Param("status", "string", default="open", enum=("open", "closed", "all"), description="which positions"),
    LIMIT,
)
ORDER_PARAMS = (
    ACCOUNT,
    SYMBOL,
    Param("status", "string", enum=("pending", "filled", "refused", "cancelled"), description="only this status"),
    START,
    END,
    LIMIT,
)
FILL_PARAMS = (ACCOUNT, SYMBOL, START, END, LIMIT)
EQUITY_PARAMS = (
    ACCOUNT,
    Param("symbol", "symbol", description="a symbol's PnL curve; default the portfolio", example="XRPUSDT"),
    START,
    END,
    Param(
        "step",
        "string",
        pattern=r"[1-9][0-9]{0,8}(ms|s|m|h|d)",
        max_length=11,
        description="one point per step (e.g. 1m, 1h); default every close",
        example="1h",
    ),
    Param(
        "limit", "integer", default=5_000, minimum=1, maximum=50_000, description="at most this many (newest) points"
    ),
)
RISK_PARAMS = (ACCOUNT,)
EVENT_PARAMS = (
    ACCOUNT,
    Param("guard", "string", enum=GUARDS, description="only this guard"),
    START,
    END,
    LIMIT,
)
BACKTEST_PARAMS = (
    Param("id", "string", pattern=r"[0-9a-f]{1,32}", max_length=32, description="a report id; default the newest"),
)
CONFIRM = Field("confirm", "boolean", default=False, description="must be true to perform the command")
REASON = Field("reason", "string", default="", max_length=500, description="why (kept in risk_events)")
COMMAND_FIELDS = (CONFIRM, REASON)
_ISO_TIME = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?"
BACKTEST_FIELDS = (
    Field(
        "account",
        "string",
        default="backtest",
        pattern=NAME_RE.pattern.strip("^$"),
        max_length=64,
        description="backtest account (not the live one)",
        example="backtest",
    ),
    Field("ablation", "boolean", default=True, description="also trade models trained with and without sentiment"),
    Field(
        "start",
        "string",
        pattern=_ISO_TIME,
        max_length=40,
        description="first candle close time traded, ISO 8601 (no zone: UTC); default the first stored",
        example="2025-11-21T00:00:00Z",
    ),
    Field(
        "end",
        "string",
        pattern=_ISO_TIME,
        max_length=40,
        description="last candle close time traded, ISO 8601 (no zone: UTC); default the last stored",
        example="2025-11-22T00:00:00Z",
    ),
)

# --- response schemas -----------------------------------------------------------------------------
_FNUM = nullable(NUM)  # a float the engine may leave NaN (no stop, no mark): null in JSON
POSITION: Schema = obj(
    {
        "symbol": STR,
        "opened_at": MS,
        "status": enum("open", "closed"),
        "side": enum("long", "short"),
        "qty": NUM,
        "entry_price": NUM,
        "entry_decision_time": MS,
        "stop_price": _FNUM,
        "target_price": _FNUM,
        "model_version": STR,
        "prob": _FNUM,
        "closed_at": nullable(MS),
        "exit_price": _FNUM,
        "exit_reason": STR,
        "realized_pnl": NUM,
        "fees": NUM,
        "mark_price": _FNUM,
        "unrealized_pnl": _FNUM,
        "marked_at": nullable(MS),
    },
    description="a position; open ones with the latest mark and unrealized PnL",
)
ORDER: Schema = obj(
    {
        "symbol": STR,
        "decision_time": MS,
        "intent": enum("entry", "exit"),
        "side": enum("buy", "sell"),
        "order_type": STR,
        "reason": STR,
        "status": enum("pending", "filled", "refused", "cancelled"),
        "cause": STR,
        "notional": _FNUM,
        "qty": _FNUM,
        "reference_price": _FNUM,
        "model_version": STR,
        "prob": _FNUM,
        "updated_at": MS,
    }
)
FILL: Schema = obj(
    {
        "symbol": STR,
        "fill_time": MS,
        "intent": enum("entry", "exit"),
        "side": enum("buy", "sell"),
        "qty": NUM,
        "price": NUM,
        "reference_price": _FNUM,
        "notional": NUM,
        "fee": NUM,
        "fee_rate": NUM,
        "liquidity": enum("taker", "maker"),
        "slippage_bps": _FNUM,
        "reason": STR,
        "decision_time": MS,
        "model_version": STR,
        "prob": _FNUM,
        "position_id": INT,
        "realized_pnl": NUM,
    },
    description="a fill: price, fee, slippage, reason and the decision it came from",
)
EQUITY_POINT: Schema = obj(
    {
        "ts": MS,
        **{
            k: _FNUM
            for k in (
                "equity",
                "cash",
                "drawdown",
                "peak_equity",
                "exposure",
                "unrealized_pnl",
                "realized_pnl",
                "fees",
                "day_pnl",
                "position_qty",
                "mark_price",
            )
        },
        "open_positions": INT,
    }
)
RISK_EVENT: Schema = obj(
    {
        "ts": MS,
        "guard": STR,
        "kind": enum("trip", "clear", "refusal", "control", "warning"),
        "symbol": STR,
        "value": _FNUM,
        "threshold": _FNUM,
        "state": STR,
        "reason": STR,
        "details": free_object("the event's details (command id, sender, ...)"),
        "event_id": STR,
    }
)
LAST_EVENT: Schema = nullable(obj({"ts": MS, "kind": STR, "reason": STR}, description="the guard's newest event"))
GUARD: Schema = obj(
    {
        "guard": enum(*GUARDS[:6]),
        "limit": _FNUM,
        "value": _FNUM,
        "state": enum("ok", "tripped", "halted", "full"),
        "blocks_entries": BOOL,
        "symbol": nullable(STR),
        "reset": STR,
        "flatten_on_trip": BOOL,
        "day_boundary": STR,
        "last_change": LAST_EVENT,
        "last_trip": LAST_EVENT,
        "last_refusal": LAST_EVENT,
        "events": free_object("events of this guard by kind (trip, clear, refusal, control, warning)"),
    },
    optional=("blocks_entries", "symbol", "reset", "flatten_on_trip", "day_boundary")
    + ("last_change", "last_trip", "last_refusal"),
)
EXCHANGE: Schema = obj(
    {"mode": enum("paper", "testnet", "live", "refused"), "account_type": STR, "why": STR},
    optional=("account_type",),
    description="which exchange mode the three switches select (the safety gate)",
)
PLAN: Schema = obj(
    {
        "action": enum("halt", "resume", "flatten", "reset-drawdown"),
        "account": STR,
        "open_positions": arr(STR),
        "description": STR,
        "code": STR,
        "params": free_object("the plan's parameters, for the page's translation of `code`"),
    }
)
SENT: Schema = obj(
    {"sent": STR, "id": STR, "at": MS, "account": STR, "applies": STR, "plan": PLAN},
    description="the control record sent to the trading stage",
)
REPORT_KEYS = (
    "start end candles starting_equity final_equity total_return sharpe max_drawdown trades open_positions "
    "hit_rate profit_factor net_pnl fees turnover exposure_time avg_holding_minutes"
).split()
REPORT: Schema = obj(
    {
        **{k: ANY if k in ("start", "end") else _FNUM for k in REPORT_KEYS},
        "fills_by_reason": free_object("fills per reason"),
        "per_symbol": free_object("per symbol: net_pnl, trades, hit_rate, fees"),
    },
    optional=(*REPORT_KEYS, "fills_by_reason", "per_symbol"),
)
BACKTEST_DOC: Schema = obj(
    {
        "report_id": STR,
        "created_at": MS,
        "account": STR,
        "source": enum("store", "files", "kafka"),
        "throughput": obj({"candles": INT, "seconds": NUM, "candles_per_s": _FNUM}),
        "settings": free_object("the trading settings the backtest ran with"),
        "report": REPORT,
        "compared_with": free_object(
            "the live account and, per table, whether the rows are identical (with `span`: the rows in it)"
        ),
        "ablation": free_object("the same strategy on models trained with and without sentiment"),
        "span": obj(
            {"start": nullable(MS), "end": nullable(MS)},
            description="the candle close times traded (--start/--end; null: unbounded); absent: all stored",
        ),
    },
    optional=("throughput", "settings", "compared_with", "ablation", "span"),
)
SUMMARY: Schema = obj(
    {
        "account": STR,
        "as_of": nullable(MS),
        **{
            k: NUM
            for k in (
                "starting_equity",
                "equity",
                "total_return",
                "cash",
                "realized_pnl",
                "unrealized_pnl",
                "fees",
                "exposure",
                "drawdown",
                "peak_equity",
                "day_pnl",
                "net_pnl_closed",
            )
        },
        "open_positions": INT,
        "trades": INT,
        "hit_rate": _FNUM,
        "blocking": arr(STR),
        "thresholds": obj({"entry": NUM, "exit": NUM, "interval": STR, "base_size": NUM, "sizing": STR}),
    }
)


def _account(ctx: AppContext, q: dict[str, Any]) -> str:
    return q.get("account") or ctx.settings.TRADING_ACCOUNT


async def _known_account(ctx: AppContext, q: dict[str, Any]) -> str:
    """The account asked for; 404 naming the known ones when it has no rows and is not the live one."""
    account = _account(ctx, q)
    if account == ctx.settings.TRADING_ACCOUNT:
        return account  # the live account exists before its first row
    if await blocking(ctx.store.named, "trading_account_known", {"account": account}):
        return account
    known = [r["account"] for r in await blocking(ctx.store.named, "trading_accounts", {})]
    known = list(dict.fromkeys([ctx.settings.TRADING_ACCOUNT, *known]))
    raise ApiError(
        404,
        f"unknown account {account!r}: no trading rows for it; known accounts: {', '.join(known)}",
        known=known,
    )


async def _checked(ctx: AppContext, q: dict[str, Any]) -> str:
    """Account (404 when unknown) and symbol (404 when the system knows nothing of it)."""
    account = await _known_account(ctx, q)
    symbol = q.get("symbol")
    if symbol and not await blocking(ctx.store.named, "trading_symbol_known", {"symbol": symbol}):
        await check_symbols(ctx, [symbol])
    return account


def _span(q: dict[str, Any]) -> tuple[int, int]:
    start = q["start"] if q.get("start") is not None else MIN_TS_MS
    end = q["end"] if q.get("end") is not None else MAX_TS_MS
    if start > end:
        raise ApiError(400, f"'start' ({start}) is after 'end' ({end}); swap them")
    return start, end


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NaN and ±inf (no stop, no mark, an equity of 0) as null: JSON has neither."""
    return [
        {
            k: (None if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))) else v)
            for k, v in r.items()
        }
        for r in rows
    ]


# --- reads ----------------------------------------------------------------------------------------
@spec(
    "Positions of the trading account (open by default, with their latest mark and unrealized PnL)",
    params=POSITION_PARAMS,
    tag="trading",
    responses={200: "positions", 404: "unknown account or symbol"},
    returns=obj({"account": STR, "status": STR, "count": INT, "positions": arr(POSITION)}),
)
async def positions(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, POSITION_PARAMS)
    account = await _checked(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "status": q["status"], "limit": q["limit"]}
    rows = _clean(await blocking(ctx.store.named, "trading_positions", args))
    return JSONResponse({"account": account, "status": q["status"], "count": len(rows), "positions": rows})


@spec(
    "Orders of the trading account, newest first",
    params=ORDER_PARAMS,
    tag="trading",
    responses={200: "orders", 404: "unknown account or symbol"},
    returns=obj({"account": STR, "count": INT, "orders": arr(ORDER)}),
)
async def orders(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, ORDER_PARAMS)
    start, end = _span(q)
    account = await _checked(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "status": q["status"] or "", "start": start, "end": end}
    rows = _clean(await blocking(ctx.store.named, "trading_orders", {**args, "limit": q["limit"]}))
    return JSONResponse({"account": account, "count": len(rows), "orders": rows})


@spec(
    "Fills of the trading account, newest first (price, fee, slippage, reason, the decision they came from)",
    params=FILL_PARAMS,
    tag="trading",
    responses={200: "fills", 404: "unknown account or symbol"},
    returns=obj({"account": STR, "count": INT, "fills": arr(FILL)}),
)
async def fills(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, FILL_PARAMS)
    start, end = _span(q)
    account = await _checked(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "start": start, "end": end, "limit": q["limit"]}
    rows = _clean(await blocking(ctx.store.named, "trading_fills", args))
    return JSONResponse({"account": account, "count": len(rows), "fills": rows})


@spec(
    "Equity curve (portfolio, or one symbol's PnL) marked at candle closes, with drawdown; `step` thins it",
    params=EQUITY_PARAMS,
    tag="trading",
    responses={200: "points", 404: "unknown account or symbol"},
    returns=obj(
        {
            "account": STR,
            "symbol": nullable(STR),
            "step_ms": INT,
            "starting_equity": NUM,
            "count": INT,
            "points": arr(EQUITY_POINT),
        }
    ),
)
async def equity(request: Request) -> Response:
    from tickcast.settings import parse_duration_ms

    ctx = get_ctx(request)
    q = parse_query(request, EQUITY_PARAMS)
    start, end = _span(q)
    step_ms = parse_duration_ms(q["step"]) if q["step"] else 0
    account = await _checked(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "start": start, "end": end}
    rows = await blocking(ctx.store.named, "trading_equity", {**args, "step_ms": step_ms, "limit": q["limit"]})
    return JSONResponse(
        {
            "account": account,
            "symbol": q["symbol"] or None,
            "step_ms": step_ms,
            "starting_equity": ctx.settings.RISK_STARTING_EQUITY,
            "count": len(rows),
            "points": _clean(rows),
        }
    )


def _guards(ctx: AppContext, account: str) -> dict[str, Any]:
    s = ctx.settings
    latest: dict[str, Any] | None = next(iter(ctx.store.named("trading_latest", {"account": account})), None)
    events: dict[str, dict[str, dict[str, Any]]] = {}
    for row in ctx.store.named("trading_risk_latest", {"account": account}):
        events.setdefault(row["guard"], {})[row["kind"]] = row
    exposure = ctx.store.named("trading_symbol_exposure", {"account": account, "ts": latest["ts"]}) if latest else []
    eq = latest["equity"] if latest else s.RISK_STARTING_EQUITY
    last_fill = ctx.store.named(
        "trading_fills", {"account": account, "symbol": "", "start": MIN_TS_MS, "end": MAX_TS_MS, "limit": 1}
    )

    def last(guard: str, *kinds: str) -> dict[str, Any] | None:
        found = [row for k in kinds if (row := events.get(guard, {}).get(k))]
        if not found:
            return None
        row = max(found, key=lambda r: r["last_ts"])
        return {
            "ts": row["last_ts"],
            "kind": next(k for k in kinds if events[guard].get(k) is row),
            "reason": row["last_reason"],
        }

    def counts(guard: str) -> dict[str, int]:
        return {k: int(v["n"]) for k, v in events.get(guard, {}).items()}

    def flag(name: str) -> bool:
        return bool(latest and latest[name])

    day_start = latest["day_start_equity"] if latest else s.RISK_STARTING_EQUITY
    top = exposure[0] if exposure else None
    guards: list[dict[str, Any]] = [
        {
            "guard": "kill_switch",
            "limit": None,
            "value": int(flag("halted")),
            "state": "halted" if flag("halted") else "ok",
            "blocks_entries": flag("halted"),
            "last_change": last("kill_switch", "control"),
        },
        {
            "guard": "drawdown",
            "limit": s.RISK_MAX_DRAWDOWN,
            "value": latest["drawdown"] if latest else 0.0,
            "state": "tripped" if flag("drawdown_halted") else "ok",
            "blocks_entries": flag("drawdown_halted"),
            "reset": "POST /admin/trading/reset-drawdown",
            "flatten_on_trip": s.RISK_DRAWDOWN_FLATTEN,
            "last_trip": last("drawdown", "trip"),
        },
        {
            "guard": "daily_loss",
            "limit": s.RISK_DAILY_LOSS_CAP,
            "value": max(0.0, -latest["day_pnl"] / day_start) if latest and day_start > 0 else 0.0,
            "state": "tripped" if flag("daily_loss_halted") else "ok",
            "blocks_entries": flag("daily_loss_halted"),
            "day_boundary": f"00:00 {s.RISK_DAILY_LOSS_TIMEZONE} (RISK_DAILY_LOSS_TIMEZONE)",
            "last_trip": last("daily_loss", "trip"),
        },
        {
            "guard": "symbol_exposure",
            "limit": s.RISK_MAX_SYMBOL_EXPOSURE,
            "value": top["exposure"] / eq if top and eq > 0 else 0.0,
            "symbol": top["symbol"] if top else None,
            "state": "ok",
            "last_refusal": last("symbol_exposure", "refusal"),
        },
        {
            "guard": "concurrency",
            "limit": s.RISK_MAX_CONCURRENT_POSITIONS,
            "value": int(latest["open_positions"]) if latest else 0,
            "state": "full" if latest and latest["open_positions"] >= s.RISK_MAX_CONCURRENT_POSITIONS else "ok",
            "last_refusal": last("concurrency", "refusal"),
        },
        {
            "guard": "slippage",
            "limit": s.RISK_MAX_SLIPPAGE_BPS,
            "value": last_fill[0]["slippage_bps"] if last_fill else None,
            "state": "ok",
            "last_refusal": last("slippage", "refusal", "warning"),
        },
    ]
    for g in guards:
        g["events"] = counts(g["guard"])
    return {"as_of": latest["ts"] if latest else None, "guards": _clean(guards), "latest": latest}


@spec(
    "Each risk guard: its limit, current value, state, what it blocks and its last trip or refusal",
    params=RISK_PARAMS,
    tag="trading",
    responses={200: "guards", 404: "unknown account"},
    returns=obj({"account": STR, "exchange": EXCHANGE, "as_of": nullable(MS), "guards": arr(GUARD)}),
)
async def risk(request: Request) -> Response:
    from tickcast.trading_gate import resolve_gate

    ctx = get_ctx(request)
    q = parse_query(request, RISK_PARAMS)
    account = await _known_account(ctx, q)
    state = await blocking(_guards, ctx, account)
    state.pop("latest")
    try:
        gate = resolve_gate(ctx.settings)
        mode = {"mode": gate.mode, "account_type": gate.account_type, "why": gate.why}
    except Exception as exc:  # noqa: BLE001 - a misconfiguration is reported, the flow refused to start
        mode = {"mode": "refused", "why": str(exc)}
    return JSONResponse({"account": account, "exchange": mode, **state})


@spec(
    "Trading summary: equity, cash, PnL, fees, open positions, drawdown, trades and hit rate, guards blocking entries",
    params=RISK_PARAMS,
    tag="trading",
    responses={200: "summary", 404: "unknown account"},
    returns=SUMMARY,
)
async def summary(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, RISK_PARAMS)
    account = await _known_account(ctx, q)

    def read() -> dict[str, Any]:
        state = _guards(ctx, account)
        latest = state["latest"] or {}
        stats = (ctx.store.named("trading_stats", {"account": account}) or [{}])[0]
        closed = int(stats.get("closed") or 0)
        start = ctx.settings.RISK_STARTING_EQUITY
        equity_now = latest.get("equity", start)
        return {
            "account": account,
            "as_of": latest.get("ts"),
            "starting_equity": start,
            "equity": equity_now,
            "total_return": equity_now / start - 1.0,
            "cash": latest.get("cash", start),
            "realized_pnl": latest.get("realized_pnl", 0.0),
            "unrealized_pnl": latest.get("unrealized_pnl", 0.0),
            "fees": latest.get("fees", 0.0),
            "exposure": latest.get("exposure", 0.0),
            "open_positions": latest.get("open_positions", 0),
            "drawdown": latest.get("drawdown", 0.0),
            "peak_equity": latest.get("peak_equity", start),
            "day_pnl": latest.get("day_pnl", 0.0),
            "trades": closed,
            "hit_rate": (int(stats.get("wins") or 0) / closed) if closed else None,
            "net_pnl_closed": stats.get("net_pnl") or 0.0,
            "blocking": [g["guard"] for g in state["guards"] if g.get("blocks_entries")],
            "thresholds": {
                "entry": ctx.settings.TRADING_ENTRY_THRESHOLD,
                "exit": ctx.settings.TRADING_EXIT_THRESHOLD,
                "interval": ctx.settings.TRADING_INTERVAL,
                "base_size": ctx.settings.LIVE_TRADE_BASE_SIZE,
                "sizing": ctx.settings.TRADING_SIZING_MODE,
            },
        }

    return JSONResponse(await blocking(read))


@spec(
    "Risk events (trips, clears, refusals, controls, warnings) of the trading account, newest first",
    params=EVENT_PARAMS,
    tag="trading",
    responses={200: "events", 404: "unknown account"},
    returns=obj({"account": STR, "count": INT, "events": arr(RISK_EVENT)}),
)
async def risk_events(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, EVENT_PARAMS)
    start, end = _span(q)
    account = await _known_account(ctx, q)
    args = {"account": account, "guard": q["guard"] or "", "start": start, "end": end, "limit": q["limit"]}
    rows = _clean(await blocking(ctx.store.named, "trading_risk_events", args))
    for row in rows:
        row["details"] = orjson.loads(row["details"] or "{}")
    return JSONResponse({"account": account, "count": len(rows), "events": rows})


@spec(
    "The newest backtest report (`tickcast backtest` or POST /admin/trading/backtest): metrics, per symbol, ablation",
    params=BACKTEST_PARAMS,
    tag="trading",
    responses={200: "report", 404: "no report yet (or none with this id)"},
    returns=BACKTEST_DOC,
)
async def backtest(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, BACKTEST_PARAMS)
    rows = await blocking(ctx.store.named, "backtest_report", {"report_id": q["id"] or ""})
    if not rows:
        what = f"no backtest report {q['id']!r}" if q["id"] else "no backtest report yet"
        raise ApiError(404, f"{what}: run `tickcast backtest` or POST /admin/trading/backtest")
    doc = orjson.loads(rows[0]["report"])
    doc.pop("written_to", None)  # a path on the machine that ran it
    return JSONResponse(doc)


@spec(
    "Live trading events: orders, fills, positions, equity at each close, risk trips/refusals/controls, heartbeats",
    params=PLAIN_PARAMS,
    auth=True,
    stream=True,
    responses=STREAM_RESPONSES,
    tag="streams",
)
async def stream_trading(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, PLAIN_PARAMS)
    symbols = None if q["symbol"] is None else frozenset(q["symbol"])
    if symbols is not None:  # symbols with trading rows are known here too, then the streams' own rule
        traded = [s for s in symbols if await blocking(ctx.store.named, "trading_symbol_known", {"symbol": s})]
        rest = sorted(symbols - set(traded))
        if rest:
            await check_symbols(ctx, rest)
    # the resume rules of every stream (api/routes_streams.py): an id ahead of the server -> resync
    last_id, unknown_id = _last_id(q), None
    if last_id is not None:
        newest = await newest_if_ahead(ctx, "trading", last_id)
        if newest is not None:
            unknown_id, last_id = last_id, newest
    return sse_response(ctx, "trading", symbols, last_id, unknown_id=unknown_id)


# --- admin: the kill switch -----------------------------------------------------------------------
COMMANDS = {"halt": "halt", "resume": "resume", "flatten": "flatten", "reset-drawdown": "reset_drawdown"}
RATE_LIMITED = ("resume", "reset-drawdown")  # they add risk; halt and flatten take it away and never wait


def _plan(ctx: AppContext, command: str, account: str) -> dict[str, Any]:
    state = _guards(ctx, account)
    open_rows = ctx.store.named(
        "trading_positions", {"account": account, "symbol": "", "status": "open", "limit": 10_000}
    )
    symbols = sorted(r["symbol"] for r in open_rows)
    latest = state["latest"] or {}
    equity_now = latest.get("equity", ctx.settings.RISK_STARTING_EQUITY)
    drawdown = latest.get("drawdown", 0.0)
    params: dict[str, Any] = {"open": len(symbols), "symbols": ", ".join(symbols) or "-"}
    if command == "halt":
        text = (
            "no new entries until resumed (pending entries are cancelled); "
            f"{len(symbols)} open position(s) keep their stops, targets and exits"
        )
    elif command == "resume":
        text = "entries allowed again (the drawdown and daily loss guards still apply if tripped)"
    elif command == "flatten":
        text = (
            f"exit orders for {len(symbols)} open position(s) ({', '.join(symbols) or 'none'}) at each symbol's next "
            "candle open, pending entries cancelled; entries are not halted (halt first to stop trading)"
        )
    else:
        params.update(equity=round(equity_now, 2), drawdown=round(drawdown, 4))
        text = (
            "the drawdown guard is cleared and its peak becomes the equity when the command applies "
            f"(now {equity_now:.2f}, drawdown {drawdown:.4f})"
        )
    return {
        "action": command,
        "account": account,
        "open_positions": symbols,
        "description": text,
        # code + params: the page says it in the reader's language (api/static/i18n_*.js)
        "code": f"plan.trading.{COMMANDS[command]}",
        "params": params,
    }


def _command(path: str) -> Callable[[Request], Awaitable[Response]]:
    command = COMMANDS[path]
    limited = path in RATE_LIMITED

    @spec(
        f"Trading kill switch: {path} (dangerous: needs confirm=true; 409 with the plan otherwise)"
        + ("; rate limited like job starts" if limited else "; never rate limited (it reduces risk)"),
        body=object_schema(COMMAND_FIELDS),
        auth=True,
        tag="admin",
        responses={202: "sent to the trading stage", 409: "needs confirm (the plan)", 503: "trading is off"},
        returns=SENT,
        rate_limited=limited,
    )
    async def handler(request: Request) -> Response:
        ctx = get_ctx(request)
        body = await read_command(request, COMMAND_FIELDS, min(ctx.settings.API_MAX_BODY_BYTES, 65_536))
        if not ctx.settings.TRADING_ENABLED:
            raise ApiError(503, "trading is off (TRADING_ENABLED=false): there is no trading stage to command")
        account = ctx.settings.TRADING_ACCOUNT
        plan = await blocking(_plan, ctx, path, account)
        if not body["confirm"]:
            raise ApiError(
                409,
                f'{path} not performed: {plan["description"]}. To do it, resend with "confirm": true',
                plan=plan,
                confirm_with={"confirm": True, "reason": body["reason"] or "why"},
            )
        if limited:
            _take_job_token(ctx, f"trading.{command}")
        record = {
            "_control": "trading",
            "command": command,
            "id": uuid.uuid4().hex,
            "at": int(time.time() * 1000),
            "by": (request.client.host if request.client else "")[:500],
            "reason": body["reason"],
        }
        await blocking(ctx.ingest, [record])
        return JSONResponse(
            {
                "sent": command,
                "id": record["id"],
                "at": record["at"],
                "account": account,
                "applies": "after every candle time <= at, before the next one (watch GET /api/trading/risk or "
                "/stream/trading)",
                "plan": plan,
            },
            status_code=202,
        )

    handler.__name__ = f"trading_{command}"
    return handler


@spec(
    "Start a backtest of the stored rows (job kind 'backtest'; the report is served at GET /api/trading/backtest)",
    body=object_schema(BACKTEST_FIELDS),
    auth=True,
    tag="admin",
    responses={
        202: "job started",
        200: "a backtest is already running",
        409: "account is the live one",
        422: "a field is unknown or malformed ('start'/'end' not ISO 8601, or start after end)",
        503: "no backtest job",
    },
    returns=JOB_STARTED,
    rate_limited=True,
)
async def start_backtest(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, BACKTEST_FIELDS, 4_096)
    if body["account"] == ctx.settings.TRADING_ACCOUNT:
        raise ApiError(
            409,
            f"the backtest account must not be the live account {body['account']!r} (TRADING_ACCOUNT): "
            "a backtest clears its account first; use another name, e.g. 'backtest'",
        )
    params: dict[str, Any] = {"account": body["account"], "ablation": body["ablation"]}
    params.update(_backtest_span(body))
    return await start_job(ctx, "backtest", params, "manual")


def _backtest_span(body: dict[str, Any]) -> dict[str, int]:
    """`start` / `end` as epoch ms (what `tickcast backtest --start/--end` takes), checked."""
    from tickcast.records import parse_time

    span: dict[str, int] = {}
    for name in ("start", "end"):
        if body[name] is None:
            continue
        try:
            ms = parse_time(body[name])
        except ValueError as exc:
            raise ApiError(422, f"'{name}': {exc}") from None
        if not MIN_TS_MS <= ms <= MAX_TS_MS:
            raise ApiError(422, f"'{name}' {body[name]!r} is outside the times the store holds (2000 to 2100)")
        span[name] = ms
    if "start" in span and "end" in span and span["start"] > span["end"]:
        raise ApiError(422, f"'start' ({body['start']}) is after 'end' ({body['end']}): the span is empty; swap them")
    return span


routes = [
    Route("/api/trading/positions", positions, methods=["GET"]),
    Route("/api/trading/orders", orders, methods=["GET"]),
    Route("/api/trading/fills", fills, methods=["GET"]),
    Route("/api/trading/equity", equity, methods=["GET"]),
    Route("/api/trading/risk", risk, methods=["GET"]),
    Route("/api/trading/risk-events", risk_events, methods=["GET"]),
    Route("/api/trading/summary", summary, methods=["GET"]),
    Route("/api/trading/backtest", backtest, methods=["GET"]),
    Route("/stream/trading", stream_trading, methods=["GET"]),
    *(Route(f"/admin/trading/{path}", _command(path), methods=["POST"]) for path in COMMANDS),
    Route("/admin/trading/backtest", start_backtest, methods=["POST"]),
]
