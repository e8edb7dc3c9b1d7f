"""The Starlette application: routes by area, one JSON error shape, health, metrics, OpenAPI."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api import (
    routes_admin,
    routes_calibration,
    routes_ingest,
    routes_jobs,
    routes_sentiment,
    routes_signals,
    routes_streams,
    routes_trading,
    routes_ui,
)
from api.auth import HEADER, QUERY
from api.context import AppContext, blocking, get_ctx
from api.errors import EXCEPTION_HANDLERS, JSONResponse
from api.schemas import BOOL, ERROR, STR, Schema, enum, free_object, nullable, obj
from api.validation import Spec, spec

log = logging.getLogger(__name__)


HEALTH = obj(
    {
        "status": enum("ok", "degraded"),
        "store": BOOL,
        "flow": BOOL,
        "broker": nullable(BOOL),
        "store_writes": nullable(BOOL),  # null where this process writes nothing (an API replica)
        "error": STR,
        "failing": {"type": "array", "items": STR},
    },
    optional=["error", "failing"],
    closed=False,  # parts may be added; each is true/false/null
)


@spec(
    "Liveness of the store, the dataflow and (distributed mode) the broker; 503 names the failing part",
    responses={200: "healthy", 503: "a part is down"},
    tag="system",
    returns=HEALTH,
)
async def healthz(request: Request) -> Response:
    ctx = get_ctx(request)
    store_ok = bool(await blocking(ctx.store.ping))
    flow_ok = await blocking(_safe, ctx.flow_alive)
    broker = None if ctx.broker_ok is None else await blocking(_safe, ctx.broker_ok)
    problems: dict[str, str] = {} if ctx.problems is None else ctx.problems()  # in-memory state: no I/O
    store_writes = None if ctx.problems is None else "store_writes" not in problems
    body: dict[str, Any] = {
        "status": "ok",
        "store": store_ok,
        "flow": flow_ok and "flow" not in problems,
        "broker": broker,
        "store_writes": store_writes,
    }
    checks = (("store", store_ok), ("store_writes", store_writes), ("flow", body["flow"]), ("broker", broker))
    failing = [name for name, ok in checks if ok is False]
    if failing:
        hints = {
            "store": f"ClickHouse at {ctx.settings.TICKCAST_CLICKHOUSE_URL} does not answer",
            "flow": "the dataflow thread/process is not running (check its log)",
            "broker": f"Kafka at {ctx.settings.TICKCAST_KAFKA_BOOTSTRAP} is unreachable",
            **problems,
        }
        body.update(status="degraded", error="; ".join(hints[f] for f in failing), failing=failing)
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


def _safe(check: Any) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing probe means unhealthy, not a 500
        log.exception("health probe failed")
        return False


@spec(
    "Prometheus metrics (text exposition format); 404 when METRICS_ENABLED=false",
    responses={200: "metrics", 404: "metrics disabled"},
    tag="system",
)
async def metrics_endpoint(request: Request) -> Response:
    if not get_ctx(request).settings.METRICS_ENABLED:
        from api.errors import ApiError

        raise ApiError(404, "metrics are disabled (METRICS_ENABLED=false); set METRICS_ENABLED=true and restart")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@spec("This OpenAPI document", responses={200: "OpenAPI 3.0 document"}, tag="system", returns=free_object())
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


SYSTEM_ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]


def all_routes() -> list[BaseRoute]:
    return [
        *SYSTEM_ROUTES,
        *routes_ingest.routes,
        *routes_sentiment.routes,
        *routes_signals.routes,
        *routes_calibration.routes,
        *routes_admin.routes,
        *routes_jobs.routes,
        *routes_streams.routes,
        *routes_trading.routes,
        *routes_ui.routes,
    ]


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json(ERROR)}
    if headers:
        out["headers"] = headers
    return out


_DEFAULT_ERRORS = {
    "params": (400, "bad parameter: invalid, unknown or repeated (the message lists the accepted ones)"),
    "body_json": (400, "body is not JSON"),
    "too_large": (413, "body too large (API_MAX_BODY_BYTES)"),
    "media": (415, "body is not declared as application/json"),
    "invalid": (422, "invalid body (the message names the field)"),
    "no_key": (401, "no API key (header X-API-Key)"),
    "bad_key": (403, "wrong API key"),
    "limited": (429, "too many job starts of this kind (API_JOB_RATE_BURST, API_JOB_RATE_PER_HOUR)"),
}


def _operation(route: Route, method: str, s: Spec) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": s.summary,
        "operationId": f"{method.lower()}_{route.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}".replace(
            "-", "_"
        ).replace(".", "_"),
        "tags": [s.tag],
        "parameters": [p.openapi() for p in s.params],
        "responses": {},
    }
    responses = op["responses"]
    for status, text in sorted({**s.responses, 500: "internal error (a bug: the server log has it)"}.items()):
        if status < 300:
            responses[str(status)] = {"description": text, "content": _success_content(route.path, s)}
        else:
            responses[str(status)] = _error(text)
    extra = ["params"]
    if s.body is not None:
        extra += ["body_json", "too_large", "media", "invalid"]
    if s.auth:
        extra += ["no_key", "bad_key"]
    if s.rate_limited:
        extra.append("limited")
    for name in extra:
        status, text = _DEFAULT_ERRORS[name]
        headers = None
        if name == "limited":
            headers = {"Retry-After": {"required": True, "description": "seconds", "schema": {"type": "integer"}}}
        elif name == "no_key":
            headers = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
        responses.setdefault(str(status), _error(text, headers))
    if s.auth:
        op["security"] = [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}] if s.stream else [{"ApiKeyHeader": []}]
    if s.body is not None:
        op["requestBody"] = {"required": s.body_required, "content": _json(s.body)}
    return op


def sse_event_schema(stream: str) -> Schema:
    """One event of a stream: its name (the stream's, or `resync`), a numeric id, JSON object data."""
    return obj(
        {
            "event": enum(stream, "resync"),
            "id": {"type": "string", "pattern": "^[0-9]{1,20}$"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object"}},
            "retry": {"type": "integer"},
        },
        optional=["id", "retry"],
        description="one server-sent event (the `retry:` hint comes first, before any event)",
    )


def _success_content(path: str, s: Spec) -> dict[str, Any]:
    if s.stream:
        return {"text/event-stream": {"schema": sse_event_schema(path.rsplit("/", 1)[-1])}}
    if path == "/metrics":
        return {"text/plain": {"schema": {"type": "string"}}}
    if path in ("/", "/ui"):
        return {"text/html": {"schema": {"type": "string"}}}
    if path.startswith("/static/"):
        return {t: {"schema": {"type": "string"}} for t in routes_ui.static_media_types()}
    return _json(s.returns if s.returns is not None else {})


def openapi_document(routes: list[BaseRoute]) -> dict[str, Any]:
    """OpenAPI 3.0 from the `@spec` of every route (the same declarations the handlers parse with)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        s = getattr(route.endpoint, "__spec__", None)
        if not isinstance(s, Spec):
            raise TypeError(f"route {route.path} has no @spec: every endpoint must describe itself")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, method, s)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "tickcast API",
            "version": "1.0",
            "description": "Sentiment + market ingest, history, calibration and model ops, SSE streams. "
            "Writes, streams and /admin need an API key in the X-API-Key header (event streams also take "
            "?api_key= for EventSource); reads are public. Bodies are JSON (Content-Type: application/json). "
            "A query parameter an endpoint does not list, or one given twice, is a 400.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": HEADER},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": QUERY},
            }
        },
    }


def create_app(ctx: AppContext) -> Starlette:
    """The API for one process; the lifespan starts/stops `ctx.scheduler` when there is one."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if ctx.scheduler is not None:
            ctx.scheduler.start()
        try:
            yield
        finally:
            if ctx.scheduler is not None:
                ctx.scheduler.stop()

    routes = all_routes()
    middleware = []
    if ctx.settings.API_CORS_ORIGINS:
        # Closed unless listed: without this middleware no response carries Access-Control-Allow-Origin.
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(ctx.settings.API_CORS_ORIGINS),
                allow_methods=["GET", "POST"],
                allow_headers=["X-API-Key", "Content-Type", "Last-Event-ID"],
                expose_headers=["Retry-After"],
                max_age=600,
            )
        )
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan, middleware=middleware)
    app.state.ctx = ctx
    app.state.api_keys = tuple(k.encode("utf-8") for k in ctx.settings.API_KEYS)
    app.state.openapi = openapi_document(routes)
    if not ctx.settings.API_KEYS:
        log.warning("API_KEYS is empty: writes, streams and /admin are open to anyone who can reach the API")
    return app
