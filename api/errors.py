"""One error shape for every failure: `{"error": "<what to do>", ...details}` as JSON.

Handlers raise `ApiError(status, message, **extra)`; Starlette's own 404/405 and
any unexpected exception go through the same handlers, so a client never sees an
HTML page or a traceback (a 500 is logged with its traceback server-side).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("api.errors")

_DEFAULT_MESSAGES = {
    400: "bad request",
    401: "an API key is required",
    403: "the API key is not valid",
    404: "not found: check the path against GET /openapi.json",
    405: "method not allowed for this path: check GET /openapi.json",
    409: "conflict",
    413: "request body too large",
    415: "send the body as JSON (Content-Type: application/json)",
    422: "invalid record",
    429: "too many requests; retry after the time in Retry-After",
    500: "internal error; the server log has the details",
    503: "service unavailable",
}


_STATUS_PHRASES = {s.phrase for s in HTTPStatus}  # Starlette's default detail: replaced by an actionable one


class JSONResponse(Response):
    """orjson-rendered JSON (NaN/inf become null; numpy scalars and arrays are serialised)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """An error a client can act on: status, message, optional extra JSON fields and headers."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers, **exc.extra)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail and exc.detail not in _STATUS_PHRASES else None
    message = detail or _DEFAULT_MESSAGES.get(exc.status_code, "request failed")
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}: check the path against GET /openapi.json"
    elif exc.status_code == 405 and request.method == "OPTIONS" and "access-control-request-method" in request.headers:
        origin = request.headers.get("origin", "?")[:100]
        message = (
            f"cross-origin requests from {origin!r} are not allowed: CORS is closed unless the origin is listed "
            "in API_CORS_ORIGINS"
        )
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}: check GET /openapi.json"
    return error_response(exc.status_code, message, getattr(exc, "headers", None))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, _DEFAULT_MESSAGES[500])


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    HTTPException: _http_error,
    Exception: _server_error,
}
