"""API keys (`API_KEYS`): header `X-API-Key`, or query `api_key` for browsers' EventSource.

Writes (every POST), SSE streams and /admin need a key. History reads, /healthz,
/metrics and /openapi.json stay public: they expose nothing a dashboard viewer
may not see, and Prometheus scrapers and load balancers carry no keys.

No key -> 401 (the message says how to send one); a wrong key -> 403. Every
configured key is compared with `hmac.compare_digest`, so the time taken does
not reveal which key (or how much of one) matched. An empty `API_KEYS` turns
checking off (logged as a warning at start-up).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api.errors import ApiError

HEADER = "X-API-Key"
QUERY = "api_key"


def check_key(request: Request, keys: tuple[bytes, ...]) -> None:
    if not keys:
        return
    given = request.headers.get(HEADER)
    if given is None:
        given = request.query_params.get(QUERY)
    if not given:
        raise ApiError(
            401,
            f"this endpoint needs an API key: send header '{HEADER}: <key>' "
            f"(or query parameter '{QUERY}=<key>' for EventSource); keys are set with API_KEYS",
            headers={"WWW-Authenticate": f'ApiKey header="{HEADER}", query="{QUERY}"'},
        )
    candidate = given.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:  # no early exit: every key is compared
        ok |= hmac.compare_digest(candidate, key)
    if not ok:
        raise ApiError(
            403, f"the API key in '{HEADER}'/'{QUERY}' is not one of API_KEYS; check for typos or a rotated key"
        )


def requires_key(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Decorator: refuse the request unless it carries a valid key (keys live on `app.state.api_keys`)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        check_key(request, request.app.state.api_keys)
        return await handler(request)

    spec: Any = getattr(handler, "__spec__", None)
    if spec is not None:
        wrapped.__spec__ = spec  # type: ignore[attr-defined]
    return wrapped
