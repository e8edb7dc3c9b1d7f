"""`tickcast sql`: one read-only query, wherever the store is.

- `chdb://dir` free: the engine opened here, read-only with the SQL interface's limits;
- `chdb://dir` held by a running `tickcast up` (the one-process rule): that process's SQL port
  (TICKCAST_API_HOST:TICKCAST_SQL_PORT), which must say it serves the same directory;
- `http(s)://…`: the ClickHouse server itself, over the same HTTP protocol.

The result comes back in the requested ClickHouse output format, written by the engine.
"""

from __future__ import annotations

import base64
import fcntl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.clickhouse_http.errors import ClickHouseError
from tickcast.settings import Settings
from tickcast.store import CHDB_SCHEME, Store, StoreMode


class SqlUnavailable(RuntimeError):
    """Neither the store nor a SQL port could answer; the message says what to do."""


@dataclass(frozen=True)
class Answer:
    body: bytes
    via: str  # "store" | "port" | "server": where the answer came from
    format: str


@dataclass(frozen=True)
class Query:
    text: str
    format: str
    database: str | None = None
    params: dict[str, str] = field(default_factory=dict)


def run_sql(settings: Settings, query: Query, *, timeout_s: float | None = None) -> Answer:
    url = settings.TICKCAST_CLICKHOUSE_URL
    if settings.store_mode is StoreMode.SERVER:
        return _server(url, query, timeout_s)
    store = Store(url)
    if held_by_another_process(Path(store.url[len(CHDB_SCHEME) :])):
        return _through_port(settings, store.url, query, timeout_s)
    try:
        store.migrate()  # the views of the newest migration, as `tickcast up` would
        return _direct(settings, store, query)
    finally:
        store.close()


def held_by_another_process(directory: Path) -> bool:
    """Whether a live process holds the chdb directory (the engine's exclusive flock on `status`).

    Asked before opening the engine, which would otherwise fail with a generic start-up error.
    """
    try:
        fh = (directory / "status").open("rb")
    except OSError:
        return False  # never opened, or not readable: opening the engine will say
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)  # released before our own engine takes it
    return False


def _direct(settings: Settings, store: Store, query: Query) -> Answer:
    from api.clickhouse_http.engine import ReadOnlyEngine
    from api.clickhouse_http.request import SqlRequest
    from api.clickhouse_http.server import chdb_path, limits_from

    engine = ReadOnlyEngine(str(chdb_path(store.url)), limits=limits_from(settings), database=store.database)
    request = SqlRequest(query.text, database=query.database, default_format=query.format, params=query.params)
    result = engine.run(request)
    return Answer(result.body, "store", result.format)


def _through_port(settings: Settings, store_url: str, query: Query, timeout_s: float | None) -> Answer:
    path = store_url[len(CHDB_SCHEME) :]
    port = settings.TICKCAST_SQL_PORT
    host = settings.TICKCAST_API_HOST
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    busy = (
        f"the store {store_url} is held by another process (a running `tickcast up`?): a chdb directory "
        "belongs to one process at a time"
    )
    if not port:
        raise SqlUnavailable(
            f"{busy}, and TICKCAST_SQL_PORT=0 here, so there is no SQL port to ask. Set TICKCAST_SQL_PORT to "
            "the port that process serves SQL on (it logs 'SQL interface … on http://…' at start), or stop it."
        )
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    password = settings.API_KEYS[0] if settings.API_KEYS else None
    try:
        body, headers = _post(base, query, password, timeout_s)
    except ConnectionError as exc:
        raise SqlUnavailable(
            f"{busy}, and nothing answers on its SQL port {base} ({exc}). Is the SQL interface on in that process "
            "(TICKCAST_SQL_PORT, same value here)? Its log says 'SQL interface … on http://…' or why it did not start."
        ) from None
    served = headers.get("X-Tickcast-Store")
    if served is not None and served != path:
        raise SqlUnavailable(
            f"{busy}; the SQL port {base} answers, but for the store {served}, not {path}: point "
            "TICKCAST_SQL_PORT (or --store) at the same system"
        )
    return Answer(body, "port", headers.get("X-ClickHouse-Format", query.format))


def _server(url: str, query: Query, timeout_s: float | None) -> Answer:
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (8443 if parsed.scheme == "https" else 8123)
    base = f"{parsed.scheme}://{parsed.hostname}:{port}"
    user = urllib.parse.unquote(parsed.username or "default")
    password = urllib.parse.unquote(parsed.password or "")
    q = Query(query.text, query.format, query.database or "tickcast", query.params)
    try:
        body, headers = _post(base, q, password, timeout_s, user=user, readonly=True)
    except ConnectionError as exc:
        raise SqlUnavailable(f"the ClickHouse server {base} does not answer ({exc})") from None
    return Answer(body, "server", headers.get("X-ClickHouse-Format", query.format))


def _post(
    base: str,
    query: Query,
    password: str | None,
    timeout_s: float | None,
    *,
    user: str = "default",
    readonly: bool = False,
) -> tuple[bytes, Any]:
    """POST the query; (body, headers). ClickHouseError for a ClickHouse error, ConnectionError when
    nothing answers."""
    params = {"default_format": query.format, **{f"param_{k}": v for k, v in query.params.items()}}
    if query.database:
        params["database"] = query.database
    if readonly:
        params["readonly"] = "1"  # a ClickHouse server: this command never writes
    request = urllib.request.Request(
        f"{base}/?{urllib.parse.urlencode(params)}", data=query.text.encode("utf-8"), method="POST"
    )
    if password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - our own URL
            return response.read(), response.headers
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", errors="replace")
        if exc.headers.get("X-ClickHouse-Exception-Code"):
            raise ClickHouseError.from_engine(text) from None
        raise ConnectionError(f"HTTP {exc.code} without a ClickHouse error: {text[:200]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(str(reason)) from None
