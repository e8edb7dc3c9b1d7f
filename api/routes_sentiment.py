"""Sentiment reads: the latest state of a symbol and its bar history (seed endpoints)."""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.schemas import INT, MS, NUM, STR, arr, enum, free_object, nullable, obj
from api.validation import Param, csv_pattern, parse_query, spec
from tickcast import metrics
from tickcast.settings import parse_duration_ms

AGGS = ("mean", "min", "max", "last", "count")
STORED_EMA = ("5m", "15m", "60m")  # the sent_ema_* columns of sentiment_bars
_DAY_MS = 86_400_000

SYMBOL = Param("symbol", "symbol", required=True, description="symbol, e.g. XRPUSDT", example="XRPUSDT")
WINDOWS = Param(
    "windows",
    "csv",
    pattern=csv_pattern("[0-9]{1,6}(ms|s|m|h|d)", 16),
    description="comma-separated subset of SENTIMENT_EMA_WINDOWS, e.g. 5m,15m,60m",
    example="5m,15m,60m",
)
LATEST_PARAMS = (SYMBOL, WINDOWS)
HISTORY_PARAMS = (
    SYMBOL,
    Param("start", "timestamp", description="epoch ms or ISO-8601; default end - 24h"),
    Param("end", "timestamp", description="epoch ms or ISO-8601; default now"),
    Param(
        "step",
        "string",
        default=None,
        pattern=r"\d{1,6}[mhd]",
        description="bucket width, a whole number of minutes >= the bar step (1m, 5m, 1h, 1d); default SENTIMENT_STEP_DEFAULT",
    ),
    Param("agg", "string", default="mean", enum=AGGS, description="aggregate of each column within a bucket"),
)


def requested_windows(ctx: AppContext, raw: tuple[str, ...] | None) -> tuple[str, ...]:
    allowed = tuple(ctx.settings.SENTIMENT_EMA_WINDOWS)
    if raw is None:
        return allowed
    unknown = [w for w in raw if w not in allowed]
    if unknown or not raw:
        raise ApiError(
            400,
            f"unknown EMA window(s) {', '.join(unknown) or '(none given)'}: 'windows' must be a "
            f"comma-separated subset of {','.join(allowed)} (SENTIMENT_EMA_WINDOWS)",
        )
    return raw


async def unknown_symbol(ctx: AppContext, symbol: str, what: str = "sentiment") -> ApiError:
    query = "sentiment_symbols" if what == "sentiment" else "market_symbols"
    known = [r["symbol"] for r in await blocking(ctx.store.named, query, {"limit": 20})]
    hint = f"known symbols include {', '.join(known)}" if known else "nothing is stored yet"
    return ApiError(404, f"no {what} stored for symbol {symbol!r}; {hint}", symbol=symbol)


async def symbol_known(ctx: AppContext, symbol: str) -> bool:
    return bool(await blocking(ctx.store.named, "sentiment_symbol_known", {"symbol": symbol}))


def _view(
    symbol: str, source: str, data: dict[str, Any], windows: tuple[str, ...], as_of: int | None, event_id: int | None
) -> dict[str, Any]:
    ema_keys = {k for k in data if k.startswith("sent_ema_")}
    return {
        "symbol": symbol,
        "source": source,
        "as_of": as_of,
        "event_id": event_id,
        "ema": {w: data.get(f"sent_ema_{w}") for w in windows},
        "composite": data.get("sent_composite"),
        "state": {k: v for k, v in data.items() if k not in ema_keys and k not in ("kind", "symbol", "sent_composite")},
    }


@spec(
    "Latest sentiment of a symbol: EMA windows, composite, current/last bar (live bus, else newest stored bar)",
    params=LATEST_PARAMS,
    responses={200: "latest state", 400: "bad windows", 404: "unknown symbol"},
    tag="sentiment",
    returns=obj(
        {
            "symbol": STR,
            "source": enum("live", "store"),
            "as_of": nullable(MS),
            "event_id": nullable(INT),
            "ema": {"type": "object", "additionalProperties": nullable(NUM), "description": "window -> EMA"},
            "composite": nullable(NUM),
            "state": free_object("the current/last bar: sent_score, sent_cnt, bar_end, …"),
        }
    ),
)
async def latest(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, LATEST_PARAMS)
    windows = requested_windows(ctx, q["windows"])
    symbol = q["symbol"]
    event = ctx.bus.latest("sentiment", symbol)
    if event is not None:
        as_of = event.data.get("as_of", event.data.get("bar_end", event.ts))
        return JSONResponse(_view(symbol, "live", event.data, windows, as_of, event.id))
    rows = await blocking(
        ctx.store.named, "sentiment_latest_bar", {"symbol": symbol, "step": ctx.settings.SENTIMENT_STEP_DEFAULT}
    )
    if rows:
        row = rows[0]
        return JSONResponse(_view(symbol, "store", row, windows, row["bar_end_ms"], None))
    if not await symbol_known(ctx, symbol):
        raise await unknown_symbol(ctx, symbol)
    # Ticks are stored but no bar has closed yet.
    return JSONResponse(_view(symbol, "store", {}, windows, None, None))


def _step_ms(ctx: AppContext, raw: str | None) -> int:
    text = raw or ctx.settings.SENTIMENT_STEP_DEFAULT
    try:
        step = parse_duration_ms(text)
    except ValueError as exc:
        raise ApiError(400, f"'step': {exc}") from None
    bar = ctx.settings.step_ms
    if step < 60_000 or step % 60_000:
        raise ApiError(400, f"'step' must be a whole number of minutes and at least 1m, got {text!r}")
    if step % bar:
        raise ApiError(
            400,
            f"'step' must be a multiple of the bar step {ctx.settings.SENTIMENT_STEP_DEFAULT} "
            f"(SENTIMENT_STEP_DEFAULT), got {text!r}",
        )
    return step


def _suggest_step(span_ms: int, max_points: int, bar_ms: int) -> str:
    minutes = math.ceil(span_ms / max_points / 60_000)
    bar_min = bar_ms // 60_000
    minutes = math.ceil(minutes / bar_min) * bar_min
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


@spec(
    "Sentiment bar history of a symbol, bucketed by step and aggregated by agg (capped at "
    "SENTIMENT_HISTORY_MAX_POINTS points)",
    params=HISTORY_PARAMS,
    responses={200: "points", 400: "bad range/step/agg", 404: "unknown symbol"},
    tag="sentiment",
    returns=obj(
        {
            "symbol": STR,
            "start": MS,
            "end": MS,
            "step_ms": INT,
            "agg": enum(*AGGS),
            "columns": arr(STR),
            "points": arr(
                obj(
                    {
                        "t": MS,
                        **{c: nullable(NUM) for c in ("sent_score", *(f"sent_ema_{w}" for w in STORED_EMA))},
                        "sent_composite": nullable(NUM),
                        "ticks": INT,
                        "bars": INT,
                    }
                )
            ),
        }
    ),
)
async def history(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, HISTORY_PARAMS)
    step = _step_ms(ctx, q["step"])
    end = q["end"] if q["end"] is not None else int(time.time() * 1000)
    start = q["start"] if q["start"] is not None else end - _DAY_MS
    if start > end:
        raise ApiError(400, f"'start' ({start}) is after 'end' ({end}); swap them")
    points = math.ceil((end - start) / step)
    limit = ctx.settings.SENTIMENT_HISTORY_MAX_POINTS
    if points > limit:
        raise ApiError(
            400,
            f"the range holds {points} points at step={q['step'] or ctx.settings.SENTIMENT_STEP_DEFAULT}; "
            f"the maximum is {limit} (SENTIMENT_HISTORY_MAX_POINTS): use step="
            f"{_suggest_step(end - start, limit, ctx.settings.step_ms)} or a shorter range",
            max_points=limit,
            points=points,
        )
    params = {
        "symbol": q["symbol"],
        "step": step,
        "bar_step": ctx.settings.SENTIMENT_STEP_DEFAULT,
        "start": start,
        "end": end,
    }
    t0 = time.perf_counter()
    rows = await blocking(ctx.store.named, "sentiment_history", params)
    metrics.SENTIMENT_HISTORY_QUERY_LATENCY_MS.observe((time.perf_counter() - t0) * 1000)
    if not rows and not await symbol_known(ctx, q["symbol"]):
        raise await unknown_symbol(ctx, q["symbol"])
    values = ["sent_score", *(f"sent_ema_{w}" for w in STORED_EMA), "sent_composite"]
    prefix = f"{q['agg']}__"
    points = [{"t": r["t"], **{c: r[prefix + c] for c in values}, "ticks": r["ticks"], "bars": r["bars"]} for r in rows]
    return JSONResponse(
        {
            "symbol": q["symbol"],
            "start": start,
            "end": end,
            "step_ms": step,
            "agg": q["agg"],
            "columns": ["t", *values, "ticks", "bars"],
            "points": points,
        }
    )


routes = [
    Route("/api/sentiment/latest", latest, methods=["GET"]),
    Route("/api/sentiment/history", history, methods=["GET"]),
]
