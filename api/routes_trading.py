"""Trading reads, the live trading stream and the kill switch (docs/design.md §11).

Reads (public, like the other history reads): positions, orders, fills, the equity curve,
each guard's state (`/risk`), a summary and the latest backtest report. Admin commands
(halt, resume, flatten, reset-drawdown) are control records sent through the flow's inputs,
like a provider re-enable: the trading stage applies them in event-time order, records them
in `risk_events` (so a backtest of the stored rows repeats them) and publishes the change on
`/stream/trading`. Without `"confirm": true` they answer 409 with the plan.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.routes_admin import start_job
from api.routes_streams import API_KEY as API_KEY_PARAM
from api.routes_streams import LAST_ID, SYMBOLS, _last_id, _symbols
from api.sse import sse_response
from api.validation import MAX_TS_MS, MIN_TS_MS, NAME_RE, Field, Param, object_schema, parse_query, read_command, spec

ACCOUNT = Param(
    "account",
    "string",
    pattern=NAME_RE.pattern.strip("^$"),
    description="trading account; default TRADING_ACCOUNT (the live flow's, 'paper')",
)
SYMBOL = Param("symbol", "symbol", description="only this symbol")
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
    Param("symbol", "symbol", description="a symbol's PnL curve; default the portfolio"),
    START,
    END,
    Param(
        "step",
        "string",
        pattern=r"\d{1,9}(ms|s|m|h|d)",
        description="one point per step (e.g. 1m, 1h); default every close",
    ),
    Param(
        "limit", "integer", default=5_000, minimum=1, maximum=50_000, description="at most this many (newest) points"
    ),
)
RISK_PARAMS = (ACCOUNT,)
EVENT_PARAMS = (
    ACCOUNT,
    Param("guard", "string", pattern=r"[a-z_]{1,32}", description="only this guard"),
    START,
    END,
    LIMIT,
)
BACKTEST_PARAMS = (Param("id", "string", pattern=r"[0-9a-f]{1,32}", description="a report id; default the newest"),)
STREAM_PARAMS = (SYMBOLS, LAST_ID, API_KEY_PARAM)
CONFIRM = Field("confirm", "boolean", default=False, description="must be true to perform the command")
REASON = Field("reason", "string", default="", description="why (kept in risk_events)")
COMMAND_FIELDS = (CONFIRM, REASON)
BACKTEST_FIELDS = (
    Field("account", "string", default="backtest", pattern=NAME_RE.pattern.strip("^$"), description="backtest account"),
    Field("ablation", "boolean", default=True, description="also trade models trained with and without sentiment"),
)


def _account(ctx: AppContext, q: dict[str, Any]) -> str:
    return q.get("account") or ctx.settings.TRADING_ACCOUNT


def _span(q: dict[str, Any]) -> tuple[int, int]:
    start = q["start"] if q.get("start") is not None else MIN_TS_MS
    end = q["end"] if q.get("end") is not None else MAX_TS_MS
    if start > end:
        raise ApiError(400, f"'start' ({start}) is after 'end' ({end}); swap them")
    return start, end


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NaN (no stop, no mark) as null: JSON has no NaN."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in rows]


# --- reads ----------------------------------------------------------------------------------------
@spec(
    "Positions of the trading account (open by default, with their latest mark and unrealized PnL)",
    params=POSITION_PARAMS,
    tag="trading",
    responses={200: "positions"},
)
async def positions(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, POSITION_PARAMS)
    account = _account(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "status": q["status"], "limit": q["limit"]}
    rows = _clean(await blocking(ctx.store.named, "trading_positions", args))
    return JSONResponse({"account": account, "status": q["status"], "count": len(rows), "positions": rows})


@spec("Orders of the trading account, newest first", params=ORDER_PARAMS, tag="trading", responses={200: "orders"})
async def orders(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, ORDER_PARAMS)
    start, end = _span(q)
    account = _account(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "status": q["status"] or "", "start": start, "end": end}
    rows = _clean(await blocking(ctx.store.named, "trading_orders", {**args, "limit": q["limit"]}))
    return JSONResponse({"account": account, "count": len(rows), "orders": rows})


@spec(
    "Fills of the trading account, newest first (price, fee, slippage, reason, the decision they came from)",
    params=FILL_PARAMS,
    tag="trading",
    responses={200: "fills"},
)
async def fills(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, FILL_PARAMS)
    start, end = _span(q)
    account = _account(ctx, q)
    args = {"account": account, "symbol": q["symbol"] or "", "start": start, "end": end, "limit": q["limit"]}
    rows = _clean(await blocking(ctx.store.named, "trading_fills", args))
    return JSONResponse({"account": account, "count": len(rows), "fills": rows})


@spec(
    "Equity curve (portfolio, or one symbol's PnL) marked at candle closes, with drawdown; `step` thins it",
    params=EQUITY_PARAMS,
    tag="trading",
    responses={200: "points"},
)
async def equity(request: Request) -> Response:
    from tickcast.settings import parse_duration_ms

    ctx = get_ctx(request)
    q = parse_query(request, EQUITY_PARAMS)
    start, end = _span(q)
    step_ms = parse_duration_ms(q["step"]) if q["step"] else 0
    account = _account(ctx, q)
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
    latest = (ctx.store.named("trading_latest", {"account": account}) or [None])[0]
    events: dict[str, dict[str, dict[str, Any]]] = {}
    for row in ctx.store.named("trading_risk_latest", {"account": account}):
        events.setdefault(row["guard"], {})[row["kind"]] = row
    exposure = ctx.store.named("trading_symbol_exposure", {"account": account, "ts": latest["ts"]}) if latest else []
    eq = latest["equity"] if latest else s.RISK_STARTING_EQUITY
    last_fill = ctx.store.named(
        "trading_fills", {"account": account, "symbol": "", "start": MIN_TS_MS, "end": MAX_TS_MS, "limit": 1}
    )

    def last(guard: str, *kinds: str) -> dict[str, Any] | None:
        found = [events.get(guard, {}).get(k) for k in kinds]
        found = [f for f in found if f]
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
    guards = [
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
    return {"as_of": latest["ts"] if latest else None, "guards": guards, "latest": latest}


@spec(
    "Each risk guard: its limit, current value, state, what it blocks and its last trip or refusal",
    params=RISK_PARAMS,
    tag="trading",
    responses={200: "guards"},
)
async def risk(request: Request) -> Response:
    from dataflows.trading.exchange import resolve_gate

    ctx = get_ctx(request)
    q = parse_query(request, RISK_PARAMS)
    account = _account(ctx, q)
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
    responses={200: "summary"},
)
async def summary(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, RISK_PARAMS)
    account = _account(ctx, q)

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
    responses={200: "events"},
)
async def risk_events(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, EVENT_PARAMS)
    start, end = _span(q)
    account = _account(ctx, q)
    args = {"account": account, "guard": q["guard"] or "", "start": start, "end": end, "limit": q["limit"]}
    rows = _clean(await blocking(ctx.store.named, "trading_risk_events", args))
    for row in rows:
        row["details"] = orjson.loads(row["details"] or "{}")
    return JSONResponse({"account": account, "count": len(rows), "events": rows})


@spec(
    "The newest backtest report (`tickcast backtest` or POST /admin/trading/backtest): metrics, per symbol, ablation",
    params=BACKTEST_PARAMS,
    tag="trading",
    responses={200: "report", 404: "no report yet"},
)
async def backtest(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, BACKTEST_PARAMS)
    rows = await blocking(ctx.store.named, "backtest_report", {"report_id": q["id"] or ""})
    if not rows:
        what = f"no backtest report {q['id']!r}" if q["id"] else "no backtest report yet"
        raise ApiError(404, f"{what}: run `tickcast backtest` or POST /admin/trading/backtest")
    return JSONResponse(orjson.loads(rows[0]["report"]))


@spec(
    "Live trading events: orders, fills, positions, equity at each close, risk trips/refusals/controls, heartbeats",
    params=STREAM_PARAMS,
    auth=True,
    stream=True,
    responses={200: "text/event-stream", 400: "bad parameter", 401: "no key", 403: "wrong key"},
    tag="streams",
)
async def stream_trading(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, STREAM_PARAMS)
    return sse_response(ctx, "trading", _symbols(q["symbol"]), _last_id(request, q["last_event_id"]))


# --- admin: the kill switch -----------------------------------------------------------------------
COMMANDS = {"halt": "halt", "resume": "resume", "flatten": "flatten", "reset-drawdown": "reset_drawdown"}


def _plan(ctx: AppContext, command: str, account: str) -> dict[str, Any]:
    state = _guards(ctx, account)
    open_rows = ctx.store.named(
        "trading_positions", {"account": account, "symbol": "", "status": "open", "limit": 10_000}
    )
    symbols = sorted(r["symbol"] for r in open_rows)
    latest = state["latest"] or {}
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
        text = (
            "the drawdown guard is cleared and its peak becomes the equity when the command applies "
            f"(now {latest.get('equity', ctx.settings.RISK_STARTING_EQUITY):.2f}, drawdown {latest.get('drawdown', 0.0):.4f})"
        )
    return {"action": command, "account": account, "open_positions": symbols, "description": text}


def _command(path: str):  # type: ignore[no-untyped-def]
    command = COMMANDS[path]

    @spec(
        f"Trading kill switch: {path} (dangerous: needs confirm=true; 409 with the plan otherwise)",
        body=object_schema(COMMAND_FIELDS),
        auth=True,
        tag="admin",
        responses={202: "sent to the trading stage", 409: "needs confirm", 503: "trading is off"},
    )
    async def handler(request: Request) -> Response:
        ctx = get_ctx(request)
        if not ctx.settings.TRADING_ENABLED:
            raise ApiError(503, "trading is off (TRADING_ENABLED=false): there is no trading stage to command")
        body = await read_command(request, COMMAND_FIELDS, min(ctx.settings.API_MAX_BODY_BYTES, 65_536))
        account = ctx.settings.TRADING_ACCOUNT
        plan = await blocking(_plan, ctx, path, account)
        if not body["confirm"]:
            raise ApiError(
                409,
                f'{path} not performed: {plan["description"]}. To do it, resend with "confirm": true',
                plan=plan,
                confirm_with={"confirm": True, "reason": body["reason"] or "why"},
            )
        record = {
            "_control": "trading",
            "command": command,
            "id": uuid.uuid4().hex,
            "at": int(time.time() * 1000),
            "by": request.client.host if request.client else "",
            "reason": body["reason"][:500],
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
        503: "no backtest job",
    },
)
async def start_backtest(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, BACKTEST_FIELDS, 4_096)
    if body["account"] == ctx.settings.TRADING_ACCOUNT:
        raise ApiError(409, f"the backtest account must not be the live account {body['account']!r}")
    return await start_job(ctx, "backtest", {"account": body["account"], "ablation": body["ablation"]}, "manual")


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
