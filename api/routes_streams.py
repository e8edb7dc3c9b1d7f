"""SSE endpoints: /stream/sentiment (seed), /stream/predictions, /stream/calibration, /stream/events.

All need an API key (header, or `api_key` query parameter for EventSource).
Resume with the `Last-Event-ID` header (browsers send it on reconnect) or the
`last_event_id` query parameter: plain ASCII digits (at most 20, below 2^64), else 400;
an id ahead of the server gets a `resync` event (api/sse.py). A symbol filter naming a
symbol the system does not know is a 404 that lists the known ones (api/known.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import get_ctx
from api.errors import ApiError
from api.known import check_symbols
from api.routes_sentiment import WINDOWS, requested_windows
from api.sse import newest_if_ahead, sse_response
from api.validation import Param, csv_pattern, parse_query, spec
from tickcast.records import SYMBOL_RE

_MAX_ID = 2**64 - 1
_SYMBOL_ITEM = SYMBOL_RE.pattern.strip("^$")
SYMBOLS = Param(
    "symbol",
    "csv",
    pattern=csv_pattern(_SYMBOL_ITEM, 100),
    max_length=3_300,
    description="only these symbols (comma-separated, at most 100); default every symbol",
    example="XRPUSDT",
)
_ID_DOC = "resume after this event id: plain digits, an id received from this stream"
LAST_ID = Param("last_event_id", "string", pattern="[0-9]{1,20}", max_length=20, description=_ID_DOC)
LAST_ID_HEADER = Param(
    "Last-Event-ID",
    "string",
    location="header",
    pattern="[0-9]{1,20}",
    max_length=20,
    description=_ID_DOC + " (browsers send it on reconnect; wins over last_event_id)",
)
# `api_key` (the EventSource key) is a security scheme of these operations, read by api/auth.py.
SENTIMENT_PARAMS = (SYMBOLS, WINDOWS, LAST_ID, LAST_ID_HEADER)
PLAIN_PARAMS = (SYMBOLS, LAST_ID, LAST_ID_HEADER)
_RESPONSES = {
    200: "text/event-stream: `retry:` hint, then events (id, event = the stream's name, JSON data) and "
    "`resync` events (see api/sse.py)",
    404: "unknown symbol",
}


def _last_id(q: dict[str, Any]) -> int | None:
    """The resume id (the header wins). Both parameters take plain ASCII digits only: in Python
    '²'.isdigit() is true and int('²') raises."""
    raw = q["Last-Event-ID"] if q["Last-Event-ID"] is not None else q["last_event_id"]
    if raw is None:
        return None
    if int(raw) > _MAX_ID:
        raise ApiError(400, f"Last-Event-ID must be an event id received from this stream (below 2^64), got {raw}")
    return int(raw)


async def _open(request: Request, stream: str, q: dict[str, Any], **kw: Any) -> Response:
    ctx = get_ctx(request)
    symbols = None if q["symbol"] is None else frozenset(q["symbol"])
    if symbols is not None:
        await check_symbols(ctx, sorted(symbols))
    last_id = _last_id(q)
    unknown_id = None
    if last_id is not None:
        newest = await newest_if_ahead(ctx, stream, last_id)
        if newest is not None:
            unknown_id, last_id = last_id, newest
    return sse_response(ctx, stream, symbols, last_id, unknown_id=unknown_id, **kw)


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
    responses={**_RESPONSES, 503: "sentiment SSE is off (SENTIMENT_ENABLE_SSE=false)"},
    tag="streams",
)
async def stream_sentiment(request: Request) -> Response:
    ctx = get_ctx(request)
    if not ctx.settings.SENTIMENT_ENABLE_SSE:
        raise ApiError(503, "sentiment SSE is off (SENTIMENT_ENABLE_SSE=false); poll GET /api/sentiment/latest")
    q = parse_query(request, SENTIMENT_PARAMS)
    windows = requested_windows(ctx, q["windows"])
    return await _open(
        request,
        "sentiment",
        q,
        rate_hz=ctx.settings.SSE_MAX_RATE_HZ,
        transform=_ema_filter(windows, tuple(ctx.settings.SENTIMENT_EMA_WINDOWS)),
    )


def _plain(stream: str, summary: str):
    @spec(summary, params=PLAIN_PARAMS, auth=True, stream=True, responses=_RESPONSES, tag="streams")
    async def handler(request: Request) -> Response:
        return await _open(request, stream, parse_query(request, PLAIN_PARAMS))

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
