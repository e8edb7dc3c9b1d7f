"""The ClickHouse HTTP interface as a Starlette app: `/` (queries), `/ping`, `/replicas_status`.

Responses are what ClickHouse clients read: the body in the requested format, and the
headers `X-ClickHouse-Format`, `X-ClickHouse-Query-Id`, `X-ClickHouse-Timezone`,
`X-ClickHouse-Summary`, `Content-Type`; errors as `Code: N. DB::Exception: ...` text with
`X-ClickHouse-Exception-Code`. Responses are compressed when the client asks
(`Accept-Encoding`) and `enable_http_compression` is on (the engine's default), as ClickHouse
does. A query runs on a worker thread of this server's own event loop, at most
`max_concurrent` at a time; others wait up to `queue_wait_s`, then get
TOO_MANY_SIMULTANEOUS_QUERIES (503).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from api.clickhouse_http import errors
from api.clickhouse_http.engine import QueryResult, ReadOnlyEngine
from api.clickhouse_http.errors import ClickHouseError
from api.clickhouse_http.request import credentials, decode_body, parse_request
from tickcast import metrics

log = logging.getLogger("tickcast.sql")
MAX_BODY_BYTES = 16 * 1024 * 1024
_BINARY = ("Native", "RowBinary", "Arrow", "Parquet", "ORC", "Avro", "Protobuf", "MsgPack", "CapnProto", "BSON", "Npy")
_LZ4_AVAILABLE: bool | None = None


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse sends for an output format."""
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("CSV"):
        return f"text/csv; charset=UTF-8; header={'present' if 'Names' in fmt else 'absent'}"
    if fmt.startswith(("JSON", "Ndjson", "NDJSON")):
        return "application/json; charset=UTF-8"
    if fmt == "XML":
        return "application/xml; charset=UTF-8"
    if fmt.startswith(_BINARY) or fmt in ("RawBLOB",):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def _lz4_available() -> bool:
    global _LZ4_AVAILABLE
    if _LZ4_AVAILABLE is None:
        try:
            import lz4.frame  # noqa: F401

            _LZ4_AVAILABLE = True
        except ImportError:
            _LZ4_AVAILABLE = False
    return _LZ4_AVAILABLE


def choose_encoding(accept_encoding: str) -> str | None:
    """The first encoding the client accepts that we produce (gzip, deflate, lz4), in its order."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        q = params.replace(" ", "").removeprefix("q=")
        try:
            if params and float(q) <= 0:
                continue
        except ValueError:
            pass
        if name in ("gzip", "x-gzip", "deflate") or (name == "lz4" and _lz4_available()):
            return "gzip" if name == "x-gzip" else name
    return None


def compress(body: bytes, encoding: str, level: int = 3) -> bytes:
    if encoding == "gzip":
        co = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return co.compress(body) + co.flush()
    if encoding == "deflate":
        return zlib.compress(body, level)
    import lz4.frame

    return bytes(lz4.frame.compress(body))


def outcome(code: int | None) -> str:
    """The `status` label of sql_http_queries_total for a finished query."""
    if code is None:
        return "ok"
    if code in errors.AUTH_CODES:
        return "auth"
    if code in errors.REFUSAL_CODES:
        return "readonly"
    if code in errors.LIMIT_CODES:
        return "limit"
    if code == errors.TOO_MANY_SIMULTANEOUS_QUERIES:
        return "busy"
    return "error"


class SqlEndpoint:
    """`/`: authenticate, take the request apart, run it on the engine, answer as ClickHouse."""

    def __init__(
        self,
        engine: ReadOnlyEngine,
        *,
        api_keys: tuple[str, ...],
        max_concurrent: int,
        queue_wait_s: float,
        store_path: str = "",
    ) -> None:
        self.engine = engine
        self.keys = tuple(k.encode("utf-8") for k in api_keys)
        self.max_concurrent = max_concurrent
        self.queue_wait_s = queue_wait_s
        self.store_path = store_path
        self._gate: asyncio.Semaphore | None = None  # made on the serving loop

    def authenticate(self, request: Request) -> str:
        creds = credentials({k.lower(): v for k, v in request.headers.items()}, dict(request.query_params))
        if not self.keys:
            return creds.user
        if creds.password is None:
            raise ClickHouseError(
                errors.REQUIRED_PASSWORD,
                f"{creds.user}: this SQL interface needs a password: send one of API_KEYS as the password "
                "(basic auth, the X-ClickHouse-Key header or the password parameter; any user name)",
                "REQUIRED_PASSWORD",
            )
        candidate = creds.password.encode("utf-8", "surrogateescape")
        ok = False
        for key in self.keys:  # every key is compared: the time taken does not tell which matched
            ok |= hmac.compare_digest(candidate, key)
        if not ok:
            raise ClickHouseError(
                errors.AUTHENTICATION_FAILED,
                f"{creds.user}: Authentication failed: password is incorrect, or there is no user with such name "
                "(the password is one of the API keys in API_KEYS)",
                "AUTHENTICATION_FAILED",
            )
        return creds.user

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        query_id = request.query_params.get("query_id") or str(uuid.uuid4())
        code: int | None = None
        counted = True
        metrics.SQL_IN_FLIGHT.inc()
        try:
            if request.method in ("GET", "HEAD") and "query" not in request.query_params:
                counted = False  # GET / without a query: ClickHouse's health answer, no key needed
                return PlainTextResponse("Ok.\n")
            self.authenticate(request)
            body = await self._body(request)
            sql = parse_request(
                request.method,
                request.query_params.multi_items(),
                body,
                content_type=request.headers.get("content-type", ""),
            )
            if sql is None:
                counted = False
                return PlainTextResponse("Ok.\n")
            settings = self.engine.policy.resolve(sql.settings)
            encoding = None
            if sql.settings.get("enable_http_compression", self.engine.default("enable_http_compression")) == "1":
                encoding = choose_encoding(request.headers.get("accept-encoding", ""))
            level = _level(sql.settings.get("http_zlib_compression_level"))
            result, payload = await self._run(lambda: self._execute(sql, settings, encoding, level))
            return self._response(result, payload, encoding, query_id)
        except ClickHouseError as err:
            code = err.code
            return self._error(err, query_id, started)
        except Exception as exc:  # a fault of ours: still ClickHouse's shape, with the traceback in the log
            log.exception("sql query failed inside the SQL interface (query_id %s)", query_id)
            internal = ClickHouseError(
                1001, f"internal error of the SQL interface ({type(exc).__name__}); the server log has the details"
            )
            code = internal.code
            return self._error(internal, query_id, started)
        finally:
            metrics.SQL_IN_FLIGHT.dec()
            if counted:
                metrics.SQL_QUERIES.labels(outcome(code)).inc()
                metrics.SQL_QUERY_SECONDS.observe(time.perf_counter() - started)

    async def _body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ClickHouseError(
                    errors.QUERY_IS_TOO_LARGE, f"the request body is over {MAX_BODY_BYTES} bytes", "QUERY_IS_TOO_LARGE"
                )
            chunks.append(chunk)
        return decode_body(b"".join(chunks), request.headers.get("content-encoding", ""))

    async def _run(self, job: Callable[[], tuple[QueryResult, bytes]]) -> tuple[QueryResult, bytes]:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.max_concurrent)
        try:
            await asyncio.wait_for(self._gate.acquire(), timeout=self.queue_wait_s)
        except TimeoutError:
            raise ClickHouseError(
                errors.TOO_MANY_SIMULTANEOUS_QUERIES,
                f"Too many simultaneous queries. Maximum: {self.max_concurrent} (TICKCAST_SQL_MAX_CONCURRENT); "
                f"waited {self.queue_wait_s:.0f} s, try again",
                "TOO_MANY_SIMULTANEOUS_QUERIES",
            ) from None
        try:
            return await anyio.to_thread.run_sync(job)
        finally:
            self._gate.release()

    def _execute(
        self, sql: Any, settings: dict[str, str], encoding: str | None, level: int
    ) -> tuple[QueryResult, bytes]:
        result = self.engine.run(sql, settings)
        payload = compress(result.body, encoding, level) if encoding and result.body else result.body
        return result, payload

    def _headers(self, query_id: str) -> dict[str, str]:
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.engine.timezone,
            "X-ClickHouse-Server-Display-Name": "tickcast",
        }
        if self.store_path:
            headers["X-Tickcast-Store"] = self.store_path
        return headers

    def _response(self, result: QueryResult, payload: bytes, encoding: str | None, query_id: str) -> Response:
        headers = {
            **self._headers(query_id),
            "X-ClickHouse-Format": result.format,
            "X-ClickHouse-Summary": orjson.dumps(result.summary).decode(),
        }
        if encoding and result.body:
            headers["Content-Encoding"] = encoding
        return Response(payload, headers=headers, media_type=content_type(result.format))

    def _error(self, err: ClickHouseError, query_id: str, started: float) -> Response:
        headers = {**self._headers(query_id), "X-ClickHouse-Exception-Code": str(err.code)}
        if err.code == errors.REQUIRED_PASSWORD:
            headers["WWW-Authenticate"] = 'Basic realm="tickcast SQL", charset="UTF-8"'
        if err.status == 503:
            headers["Retry-After"] = "1"
        kind = outcome(err.code)
        if kind in ("limit", "readonly"):
            log.info(
                "sql query %s after %.2f s: %s (query_id %s)",
                "cancelled" if kind == "limit" else "refused",
                time.perf_counter() - started,
                str(err),
                query_id,
            )
        elif err.status >= 500:
            log.warning("sql query failed: %s (query_id %s)", err, query_id)
        return PlainTextResponse(err.body, status_code=err.status, headers=headers)


def _level(text: str | None) -> int:
    try:
        return min(9, max(1, int(text))) if text else 3
    except ValueError:
        return 3


async def ping(request: Request) -> Response:
    return PlainTextResponse("Ok.\n")


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    text = (
        f"There is no handle {request.url.path}\n\n"
        "This is tickcast's read-only ClickHouse HTTP interface. Use / (GET ?query=... or POST the query) "
        "for queries, /ping for health checks.\n"
    )
    return PlainTextResponse(text, status_code=status if status in (404, 405) else 404)


def create_sql_app(
    engine: ReadOnlyEngine,
    *,
    api_keys: tuple[str, ...],
    max_concurrent: int = 2,
    queue_wait_s: float = 30.0,
    store_path: str = "",
) -> Starlette:
    endpoint = SqlEndpoint(
        engine, api_keys=api_keys, max_concurrent=max_concurrent, queue_wait_s=queue_wait_s, store_path=store_path
    )
    routes = [
        Route("/", endpoint.handle, methods=["GET", "POST"]),
        Route("/ping", ping, methods=["GET", "HEAD"]),
        Route("/replicas_status", ping, methods=["GET", "HEAD"]),  # no replicas: always in sync
    ]
    if not api_keys:
        log.warning("API_KEYS is empty: the SQL interface answers queries from anyone who can reach its port")
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
