"""History reads of the flow's tables: predictions, labels, candles, features.

Each takes `symbol` (required: every table is ordered by symbol first), optional
`interval`, a `[start, end)` range on close_time and `limit`; it returns the
newest `limit` rows of the range, oldest first, timestamps in epoch ms.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.known import check_model_version
from api.routes_sentiment import unknown_symbol
from api.schemas import INT, MS, NUM, STR, Schema, arr, nullable, obj
from api.validation import Param, parse_query, spec
from tickcast.records import INTERVAL_MS, MAX_TS_MS, MIN_TS_MS

COMMON = (
    Param("symbol", "symbol", required=True, description="symbol, e.g. XRPUSDT", example="XRPUSDT"),
    Param("interval", "string", enum=tuple(INTERVAL_MS), description="candle interval; default every interval"),
    Param("start", "timestamp", description="close_time >= start (epoch ms or ISO-8601); default: no bound"),
    Param("end", "timestamp", description="close_time < end (epoch ms or ISO-8601); default: no bound"),
    Param("limit", "integer", default=500, minimum=1, maximum=10_000, description="newest rows to return"),
)
PREDICTION_PARAMS = (
    *COMMON,
    Param(
        "model_version",
        "string",
        pattern=r"[A-Za-z0-9._-]{1,128}",
        description="only this model version (e.g. baseline)",
    ),
)


_KEY = {"symbol": STR, "interval": STR}
_FEATURES = (
    "ret_1 ret_5 ret_15 rv_30 atr_14 rsi_14 vol_z_30 hl_range sent_score sent_cnt sent_pos_ratio sent_d1 sent_d5 "
    "sent_vol_30 sent_ema_5m sent_ema_15m sent_ema_60m sent_composite"
).split()
ROWS: dict[str, Schema] = {
    "predictions": obj(
        {
            **_KEY,
            "close_time": MS,
            "horizon": INT,
            "model_version": STR,
            "prob": NUM,
            "fallback_reason": STR,
            "latency_ms": NUM,
        }
    ),
    "labels": obj({**_KEY, "close_time": MS, "horizon": INT, "label": INT, "close_t": NUM, "close_th": NUM}),
    "candles": obj(
        {
            **_KEY,
            "open_time": MS,
            "close_time": MS,
            **{k: NUM for k in ("open", "high", "low", "close", "volume")},
            "ingest_ts": MS,
        }
    ),
    "features": obj(
        {**_KEY, "close_time": MS, "close": NUM, **{k: nullable(NUM) for k in _FEATURES}, "join_status": STR}
    ),
}


def _handler(table: str, params: tuple[Param, ...]):
    @spec(
        f"{table.capitalize()} of a symbol in [start, end), newest `limit` rows, oldest first",
        params=params,
        responses={200: "rows", 400: "bad parameter", 404: "unknown symbol or model version"},
        tag="history",
        returns=obj({"symbol": STR, "count": INT, "rows": arr(ROWS[table]), "query_ms": NUM}),
    )
    async def handler(request: Request) -> Response:
        ctx = get_ctx(request)
        q = parse_query(request, params)
        start = q["start"] if q["start"] is not None else MIN_TS_MS
        end = q["end"] if q["end"] is not None else MAX_TS_MS
        if start > end:
            raise ApiError(400, f"'start' ({start}) is after 'end' ({end}); swap them")
        await check_model_version(ctx, q.get("model_version"))
        args = {
            "symbol": q["symbol"],
            "interval": q["interval"] or "",
            "start": start,
            "end": end,
            "limit": q["limit"],
            "model_version": q.get("model_version") or "",
        }
        t0 = time.perf_counter()
        rows = await blocking(ctx.store.named, f"{table}_history", args)
        if not rows and not await blocking(ctx.store.named, "market_symbol_known", {"symbol": q["symbol"]}):
            raise await unknown_symbol(ctx, q["symbol"], "market data")
        return JSONResponse(
            {
                "symbol": q["symbol"],
                "count": len(rows),
                "rows": rows,
                "query_ms": round((time.perf_counter() - t0) * 1000, 3),
            }
        )

    handler.__name__ = f"get_{table}"
    return handler


routes = [
    Route("/api/predictions", _handler("predictions", PREDICTION_PARAMS), methods=["GET"]),
    Route("/api/labels", _handler("labels", COMMON), methods=["GET"]),
    Route("/api/candles", _handler("candles", COMMON), methods=["GET"]),
    Route("/api/features", _handler("features", COMMON), methods=["GET"]),
]
