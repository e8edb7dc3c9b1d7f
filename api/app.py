"""The Starlette application: routes by area, one JSON error shape, health, metrics, OpenAPI."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
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
from api.validation import Spec, spec

log = logging.getLogger(__name__)
_ERROR_SCHEMA: dict[str, Any] = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


@spec(
    "Liveness of the store, the dataflow and (distributed mode) the broker; 503 names the failing part",
    responses={200: "healthy", 503: "a part is down"},
    tag="system",
)
async def healthz(request: Request) -> Response:
    ctx = get_ctx(request)
    store_ok = bool(await blocking(ctx.store.ping))
    flow_ok = await blocking(_safe, ctx.flow_alive)
    broker = None if ctx.broker_ok is None else await blocking(_safe, ctx.broker_ok)
    body: dict[str, Any] = {"status": "ok", "store": store_ok, "flow": flow_ok, "broker": broker}
    failing = [name for name, ok in (("store", store_ok), ("flow", flow_ok), ("broker", broker)) if ok is False]
    if failing:
        hints = {
            "store": f"ClickHouse at {ctx.settings.TICKCAST_CLICKHOUSE_URL} does not answer",
            "flow": "the dataflow thread/process is not running (check its log)",
            "broker": f"Kafka at {ctx.settings.TICKCAST_KAFKA_BOOTSTRAP} is unreachable",
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


@spec("Prometheus metrics (text exposition format)", responses={200: "metrics"}, tag="system")
async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@spec("This OpenAPI document", responses={200: "OpenAPI 3.0 document"}, tag="system")
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


def _operation(route: Route, method: str, s: Spec) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": s.summary,
        "operationId": f"{method.lower()}_{route.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}".replace(
            "-", "_"
        ).replace(".", "_"),
        "tags": [s.tag],
        "parameters": [p.openapi() for p in s.params if p.name != "api_key"],
        "responses": {},
    }
    for status, text in sorted({**s.responses, 500: "internal error"}.items()):
        content: dict[str, Any]
        if status < 300:
            content = {_success_type(route.path, s): {"schema": {"type": "string"} if s.stream else {}}}
        else:
            content = {"application/json": {"schema": _ERROR_SCHEMA}}
        op["responses"][str(status)] = {"description": text, "content": content}
    if s.auth:
        op["security"] = [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]
        op["responses"].setdefault(
            "401", {"description": "no API key", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
        op["responses"].setdefault(
            "403", {"description": "wrong API key", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
    if s.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": s.body}}}
        op["responses"].setdefault(
            "400", {"description": "body is not JSON", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
        op["responses"].setdefault(
            "413", {"description": "body too large", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
        op["responses"].setdefault(
            "422", {"description": "invalid body", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
    if s.params:
        op["responses"].setdefault(
            "400", {"description": "bad parameter", "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        )
    return op


def _success_type(path: str, s: Spec) -> str:
    if s.stream:
        return "text/event-stream"
    if path == "/metrics":
        return "text/plain"
    if path in ("/", "/ui"):
        return "text/html"
    if path.startswith("/static/"):
        return "application/octet-stream"
    return "application/json"


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
            "Writes, streams and /admin need an API key; reads are public.",
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
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.api_keys = tuple(k.encode("utf-8") for k in ctx.settings.API_KEYS)
    app.state.openapi = openapi_document(routes)
    if not ctx.settings.API_KEYS:
        log.warning("API_KEYS is empty: writes, streams and /admin are open to anyone who can reach the API")
    return app
