"""API keys (`API_KEYS`): header `X-API-Key`; the query parameter `api_key` only on event streams.

Writes (every POST), SSE streams and /admin need a key. History reads, /healthz,
/metrics and /openapi.json stay public: they expose nothing a dashboard viewer
may not see, and Prometheus scrapers and load balancers carry no keys.

The key goes in the header. Browsers' EventSource cannot set headers, so `GET /stream/*`
also takes `?api_key=`; nothing else does — a key in a URL ends up in logs and history,
and a cross-site page can put one in a link or a form but never in a header without a CORS
preflight (closed by default, `API_CORS_ORIGINS`).

No key -> 401 (the message says how to send one); a wrong key -> 403. Every
configured key is compared with `hmac.compare_digest`, so the time taken does
not reveal which key (or how much of one) matched. An empty `API_KEYS` turns
checking off (logged as a warning at start-up).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from api.errors import ApiError

HEADER = "X-API-Key"
QUERY = "api_key"


def check_key(request: Request, keys: tuple[bytes, ...], *, allow_query: bool = False) -> None:
    if not keys:
        return
    given = request.headers.get(HEADER)
    if given is None and allow_query:
        given = request.query_params.get(QUERY)
    if not given:
        where = f"header '{HEADER}: <key>'" + (
            f" (or query parameter '{QUERY}=<key>' for EventSource)"
            if allow_query
            else f"; the '{QUERY}' query parameter is accepted only by the /stream/* endpoints"
        )
        raise ApiError(
            401,
            f"this endpoint needs an API key: send {where}; keys are set with API_KEYS",
            headers={"WWW-Authenticate": f'ApiKey header="{HEADER}"' + (f', query="{QUERY}"' if allow_query else "")},
        )
    candidate = given.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:  # no early exit: every key is compared
        ok |= hmac.compare_digest(candidate, key)
    if not ok:
        raise ApiError(
            403, f"the API key in '{HEADER}'/'{QUERY}' is not one of API_KEYS; check for typos or a rotated key"
        )
