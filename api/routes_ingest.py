"""POST ingest of sentiment ticks and market candles (DESIGN §3).

The whole request is validated before anything is handed on: one bad record ->
422 listing every bad record by index, and nothing reaches the flow or the store.
Accepted records go on as the client sent them, stamped with `ingest_ts` = arrival time:
a client's own `ingest_ts` is ignored (it is the time *this system* first saw the record;
replays of files and stored rows keep theirs, through `tickcast replay` and backfill jobs).

The checks are the flow's (`tickcast.records.decode_record` with the flow's settings:
size, future, duplicated fields) plus the tick lateness rule the flow applies later, so
a client hears at once what the flow would refuse; the flow still applies its own rules.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.validation import NAME_RE, parse_json, read_body, spec
from tickcast import metrics
from tickcast.acks import Receipt
from tickcast.inbox import RETRY_AFTER_S, IngestRefused
from tickcast.records import (
    FIELD_NAMES,
    INTERVAL_MS,
    KIND_FIELDS,
    MAX_TS_MS,
    MIN_TS_MS,
    SYMBOL_RE,
    Rejection,
    decode_record,
    duplicate_reason,
    duplicated_fields,
    fields_unique,
    names_unique,
    record_kind,
)
from tickcast.settings import Settings

_TS = {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS, "description": "epoch milliseconds"}
TICK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["symbol", "ts", "score", "provider"],
    "properties": {
        "symbol": {"type": "string", "pattern": SYMBOL_RE.pattern, "example": "XRPUSDT"},
        "ts": _TS,
        "score": {"type": "number", "minimum": -1, "maximum": 1},
        "polarity": {"type": "integer", "enum": [-1, 0, 1, None], "nullable": True},
        "provider": {"type": "string", "pattern": NAME_RE.pattern, "example": "newsapi"},
        "meta": {"description": 'a JSON object, or a string holding one; null and "" mean none', "nullable": True},
        "id": {"type": "string", "minLength": 1, "maxLength": 128, "nullable": True},
        "ingest_ts": {
            **_TS,
            "nullable": True,
            "description": "ignored: the server stamps every record with its arrival time",
        },
    },
}
CANDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["symbol", "interval", "open_time", "close_time", "open", "high", "low", "close", "volume"],
    "properties": {
        "symbol": {"type": "string", "pattern": SYMBOL_RE.pattern},
        "interval": {"type": "string", "enum": list(INTERVAL_MS)},
        "open_time": _TS,
        "close_time": {**_TS, "description": "open_time + interval (exclusive end), epoch ms"},
        **{k: {"type": "number", "minimum": 0, "exclusiveMinimum": True} for k in ("open", "high", "low", "close")},
        "volume": {"type": "number", "minimum": 0},
        "ingest_ts": {
            **_TS,
            "nullable": True,
            "description": "ignored: the server stamps every record with its arrival time",
        },
    },
}
_RESPONSES = {
    202: "accepted: {accepted: n} (embedded, TICKCAST_INGEST_ACK=stored: also stored, {stored: true})",
    400: "not JSON",
    413: "body too large (API_MAX_BODY_BYTES)",
    422: "invalid records (too large, dated in the future, late, duplicated fields, …), listed by index",
    503: "not accepted now (buffer full, store failing, dataflow down) or not confirmed stored: retry after Retry-After",
}
ACCEPTED = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "stored": {"type": "boolean", "description": "true: the records' rows are in the store (TICKCAST_INGEST_ACK)"},
    },
    "required": ["accepted"],
}


def _batch_schema(item: dict[str, Any], key: str, *, single: bool) -> dict[str, Any]:
    batch = {"type": "object", "required": [key], "properties": {key: {"type": "array", "items": item, "minItems": 1}}}
    variants = [item, batch] if single else [{"type": "array", "items": item, "minItems": 1}, batch]
    return {"oneOf": variants}


def _items(body: Any, key: str) -> list[Any]:
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict) and key in body:
        items = body[key]
        if not isinstance(items, list):
            raise ApiError(422, f"'{key}' must be an array of records, got {type(items).__name__}")
    elif isinstance(body, dict):
        items = [body]
    else:
        raise ApiError(
            422, f'expected a JSON object (one record), an array, or {{"{key}": [...]}}; got {type(body).__name__}'
        )
    if not items:
        raise ApiError(422, f"the batch is empty: send at least one record in '{key}'")
    return items


def _duplicates(body: bytes, parsed: Any, items: list[Any], key: str) -> dict[int, str]:
    """Record index -> a contract field the body names twice in that record (orjson, which
    parsed it, keeps the last value). Cheap when there is none: see records.names_unique."""
    if names_unique(body, parsed) or fields_unique(body, items, FIELD_NAMES):
        return {}
    if isinstance(parsed, list):
        found = duplicated_fields(body, 2)
    elif isinstance(parsed, dict) and key in parsed:
        found = duplicated_fields(body, 3, key)
    else:
        found = duplicated_fields(body, 1)
    out: dict[int, str] = {}
    for index, name in found:
        out.setdefault(index, name)
    return out


def _refusal(obj: Any, kind: str, duplicate: str | None, now: int, settings: Settings) -> tuple[str | None, Any]:
    """(why `obj` is refused or None, the record to hand on)."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}", None
    own = record_kind(obj)
    if duplicate is not None and (own is None or duplicate in KIND_FIELDS[own]):  # the fields decode_record reads
        return duplicate_reason(duplicate), None
    # The server's arrival time, never the client's: ingest_ts is when this system saw the record.
    record = {**obj, "ingest_ts": now}
    decoded = decode_record(
        record,
        source="api",
        now_ms=now,
        default_ingest="now",
        pos_threshold=settings.SENTIMENT_POS_THRESHOLD,
        max_record_bytes=settings.INGEST_MAX_RECORD_BYTES,
        max_future_ms=settings.INGEST_MAX_FUTURE_MS,
        wall_ms=now,
    )
    if isinstance(decoded, Rejection):
        return decoded.reason, None
    if decoded[0] != kind:
        other = {"tick": "/api/sentiment/tick", "candle": "/api/market/candle"}.get(decoded[0])
        hint = f"; post it to {other}" if other else "; control records go through /admin endpoints"
        return f"this endpoint takes {kind}s, this record is a {decoded[0]}{hint}", None
    if kind == "tick" and now - decoded[1]["ts"] > settings.SENTIMENT_MAX_LATENCY_MS:  # the flow's late rule
        return (
            f"late tick: ingest_ts - ts = {now - decoded[1]['ts']} ms > {settings.SENTIMENT_MAX_LATENCY_MS} ms "
            "(SENTIMENT_MAX_LATENCY_MS); the flow drops ticks this old, send them sooner or replay them from a file",
            None,
        )
    return None, record


async def _ingest(request: Request, kind: str, key: str) -> Response:
    ctx = get_ctx(request)
    body = await read_body(request, ctx.settings.API_MAX_BODY_BYTES)
    parsed = parse_json(body)
    items = _items(parsed, key)
    now = int(time.time() * 1000)
    duplicates = _duplicates(body, parsed, items, key)
    accepted, details = [], []
    for index, obj in enumerate(items):
        reason, record = _refusal(obj, kind, duplicates.get(index), now, ctx.settings)
        if reason is None:
            accepted.append(record)
        else:
            details.append({"index": index, "reason": reason})
    if details:
        if kind == "tick":
            metrics.SENTIMENT_INGEST_ERRORS.labels("invalid_http").inc(len(details))
        shown = details[:100]
        raise ApiError(
            422,
            f"{len(details)} of {len(items)} {kind}(s) are invalid and nothing was accepted: fix the records listed "
            f"in 'details' (by index) and resend the whole batch",
            details=shown,
            truncated=len(details) > len(shown),
        )
    try:
        receipt = await blocking(ctx.ingest, accepted)
    except IngestRefused as exc:
        metrics.INGEST_REFUSED.labels(exc.reason).inc()
        raise ApiError(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except Exception as exc:
        raise ApiError(503, f"the dataflow is not taking records right now ({exc}); retry shortly") from exc
    if receipt is None:
        return JSONResponse({"accepted": len(accepted)}, status_code=202)
    return await _when_stored(ctx, receipt, len(accepted))


async def _when_stored(ctx: AppContext, receipt: Receipt, n: int) -> Response:
    """TICKCAST_INGEST_ACK=stored: 202 once every record's row is in the store, else 503."""
    timeout_ms = ctx.settings.TICKCAST_INGEST_ACK_TIMEOUT_MS
    if await receipt.wait(timeout_ms / 1000):
        return JSONResponse({"accepted": n, "stored": True}, status_code=202)
    ctx.forget_receipt(receipt)
    reason = "refused" if receipt.refused else "ack_timeout"
    metrics.INGEST_REFUSED.labels(reason).inc()
    why = receipt.refused or f"not stored within {timeout_ms} ms (TICKCAST_INGEST_ACK_TIMEOUT_MS)"
    raise ApiError(
        503,
        f"{len(receipt.pending)} of {n} record(s) are not confirmed stored: {why}. They were handed to the "
        "dataflow and are stored once the store takes them; sending the request again is safe (writes are "
        "idempotent, a repeat is recorded as a duplicate)",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


@spec(
    'Ingest one sentiment tick, or a batch {"ticks": [...]}',
    body=_batch_schema(TICK_SCHEMA, "ticks", single=True),
    auth=True,
    responses=_RESPONSES,
    returns=ACCEPTED,
    tag="ingest",
)
async def post_tick(request: Request) -> Response:
    return await _ingest(request, "tick", "ticks")


@spec(
    'Ingest a batch of sentiment ticks ([...] or {"ticks": [...]})',
    body=_batch_schema(TICK_SCHEMA, "ticks", single=False),
    auth=True,
    responses=_RESPONSES,
    returns=ACCEPTED,
    tag="ingest",
)
async def post_ticks(request: Request) -> Response:
    return await _ingest(request, "tick", "ticks")


@spec(
    'Ingest one market candle, or a batch {"candles": [...]}',
    body=_batch_schema(CANDLE_SCHEMA, "candles", single=True),
    auth=True,
    responses=_RESPONSES,
    returns=ACCEPTED,
    tag="ingest",
)
async def post_candle(request: Request) -> Response:
    return await _ingest(request, "candle", "candles")


@spec(
    'Ingest a batch of market candles ([...] or {"candles": [...]})',
    body=_batch_schema(CANDLE_SCHEMA, "candles", single=False),
    auth=True,
    responses=_RESPONSES,
    returns=ACCEPTED,
    tag="ingest",
)
async def post_candles(request: Request) -> Response:
    return await _ingest(request, "candle", "candles")


routes = [
    Route("/api/sentiment/tick", post_tick, methods=["POST"]),
    Route("/api/sentiment/ticks", post_ticks, methods=["POST"]),
    Route("/api/market/candle", post_candle, methods=["POST"]),
    Route("/api/market/candles", post_candles, methods=["POST"]),
]
