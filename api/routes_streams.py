"""SSE endpoints: /stream/sentiment (seed), /stream/predictions, /stream/calibration, /stream/events.

All need an API key (header, or `api_key` query parameter for EventSource).
Resume with the `Last-Event-ID` header (browsers send it on reconnect) or the
`last_event_id` query parameter.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import get_ctx
from api.errors import ApiError
from api.routes_sentiment import requested_windows
from api.sse import sse_response
from api.validation import SYMBOL_RE, Param, parse_query, spec

_MAX_ID = 2**64 - 1
SYMBOLS = Param("symbol", "csv", description="only these symbols (comma-separated); default every symbol")
LAST_ID = Param(
    "last_event_id",
    "string",
    pattern=r"\d{1,20}",
    description="resume after this event id (same as the Last-Event-ID header)",
)
API_KEY = Param("api_key", "string", description="API key for clients that cannot set headers (EventSource)")
SENTIMENT_PARAMS = (SYMBOLS, Param("windows", "csv", description="subset of SENTIMENT_EMA_WINDOWS"), LAST_ID, API_KEY)
PLAIN_PARAMS = (SYMBOLS, LAST_ID, API_KEY)
_RESPONSES = {200: "text/event-stream", 400: "bad parameter", 401: "no key", 403: "wrong key"}


def _symbols(raw: tuple[str, ...] | None) -> frozenset[str] | None:
    if raw is None:
        return None
    bad = [s for s in raw if not SYMBOL_RE.match(s)]
    if bad or not raw:
        raise ApiError(
            400, f"'symbol' must be symbols like XRPUSDT separated by commas, got {','.join(bad) or '(none)'}"
        )
    return frozenset(raw)


def _last_id(request: Request, query_value: str | None) -> int | None:
    raw = request.headers.get("last-event-id") or query_value
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or int(raw) > _MAX_ID:
        raise ApiError(
            400,
            f"Last-Event-ID must be an event id received from this stream (a non-negative integer), got {raw[:40]!r}",
        )
    return int(raw)


def _ema_filter(windows: tuple[str, ...], allowed: tuple[str, ...]) -> Any:
    if tuple(windows) == tuple(allowed):
        return None
    drop = {f"sent_ema_{w}" for w in allowed if w not in windows}
    return lambda data: {k: v for k, v in data.items() if k not in drop}


@spec(
    "Live sentiment per symbol (latest EMA/bar state after ticks, coalesced to SSE_MAX_RATE_HZ, and every bar close)",
    params=SENTIMENT_PARAMS,
    auth=True,
    stream=True,
    responses=_RESPONSES,
    tag="streams",
)
async def stream_sentiment(request: Request) -> Response:
    ctx = get_ctx(request)
    if not ctx.settings.SENTIMENT_ENABLE_SSE:
        raise ApiError(503, "sentiment SSE is off (SENTIMENT_ENABLE_SSE=false); poll GET /api/sentiment/latest")
    q = parse_query(request, SENTIMENT_PARAMS)
    windows = requested_windows(ctx, q["windows"])
    return sse_response(
        ctx,
        "sentiment",
        _symbols(q["symbol"]),
        _last_id(request, q["last_event_id"]),
        rate_hz=ctx.settings.SSE_MAX_RATE_HZ,
        transform=_ema_filter(windows, tuple(ctx.settings.SENTIMENT_EMA_WINDOWS)),
    )


def _plain(stream: str, summary: str):  # type: ignore[no-untyped-def]
    @spec(summary, params=PLAIN_PARAMS, auth=True, stream=True, responses=_RESPONSES, tag="streams")
    async def handler(request: Request) -> Response:
        ctx = get_ctx(request)
        q = parse_query(request, PLAIN_PARAMS)
        return sse_response(ctx, stream, _symbols(q["symbol"]), _last_id(request, q["last_event_id"]))

    handler.__name__ = f"stream_{stream}"
    return handler


routes = [
    Route("/stream/sentiment", stream_sentiment, methods=["GET"]),
    Route("/stream/predictions", _plain("predictions", "Live predictions (one per candle and model)"), methods=["GET"]),
    Route(
        "/stream/calibration",
        _plain("calibration", "Calibration window evaluations as they are computed"),
        methods=["GET"],
    ),
    Route(
        "/stream/events",
        _plain("events", "Drift, recommendations, job progress, model switches, providers"),
        methods=["GET"],
    ),
]
