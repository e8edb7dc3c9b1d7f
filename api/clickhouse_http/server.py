"""The SQL interface's own uvicorn server, on a thread of its own next to the API's.

Its own thread means its own event loop and worker threads: a slow query, or a large result
being compressed and sent, never holds the API's loop or its thread pool. The port is bound
here first, so a busy port is reported in one log line (and `sql_http_up` stays 0) instead
of stopping `tickcast up`: the SQL interface is an extra door, the system runs without it.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from api.clickhouse_http.app import create_sql_app
from api.clickhouse_http.engine import ReadOnlyEngine
from api.clickhouse_http.settings_policy import Limits
from tickcast import metrics
from tickcast.settings import Settings
from tickcast.store import chdb_dir

log = logging.getLogger("tickcast.sql")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_execution_time=settings.TICKCAST_SQL_MAX_EXECUTION_S,
        max_memory_usage=settings.TICKCAST_SQL_MAX_MEMORY_BYTES,
        max_result_rows=settings.TICKCAST_SQL_MAX_RESULT_ROWS,
        max_result_bytes=settings.TICKCAST_SQL_MAX_RESULT_BYTES,
        max_threads=settings.TICKCAST_SQL_MAX_THREADS,
    )


def chdb_path(store_url: str) -> str | None:
    """The directory of a `chdb://` store URL (already resolved by the Store), else None."""
    directory = chdb_dir(store_url)
    return None if directory is None else str(directory)


class SqlHttpServer:
    """uvicorn serving `app` on `host:port` in a daemon thread."""

    def __init__(self, app: Any, host: str, port: int, *, log_level: str = "warning") -> None:
        import uvicorn

        self.host, self.port = host, port
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            access_log=False,
            log_config=None,  # the process's logging is configured already; uvicorn's would reset it
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind the port (OSError when it is taken), then serve on a thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="sql-http", daemon=True
        )
        self._thread.start()
        metrics.SQL_UP.set(1)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        metrics.SQL_UP.set(0)


def start_sql_server(settings: Settings, store_url: str, database: str) -> SqlHttpServer | None:
    """`tickcast up`'s SQL interface on TICKCAST_API_HOST:TICKCAST_SQL_PORT, or None (off, or not possible)."""
    if not settings.TICKCAST_SQL_PORT:
        log.info("SQL interface off (TICKCAST_SQL_PORT=0)")
        return None
    path = chdb_path(store_url)
    if path is None:
        log.info("SQL interface off: the store is a ClickHouse server (%s); query it directly", store_url)
        return None
    try:
        engine = ReadOnlyEngine(path, limits=limits_from(settings), database=database)
    except Exception as exc:  # noqa: BLE001 - the SQL interface is an extra door: the system runs without it
        log.error("SQL interface NOT started: cannot open read-only sessions on %s: %s", path, exc)
        return None
    app = create_sql_app(
        engine,
        api_keys=tuple(settings.API_KEYS),
        max_concurrent=settings.TICKCAST_SQL_MAX_CONCURRENT,
        queue_wait_s=settings.TICKCAST_SQL_MAX_EXECUTION_S + 5,  # a queued query outlasts one at the limit
        store_path=engine.path,
    )
    server = SqlHttpServer(
        app, settings.TICKCAST_API_HOST, settings.TICKCAST_SQL_PORT, log_level=settings.TICKCAST_LOG_LEVEL
    )
    try:
        server.start()
    except OSError as exc:
        log.error(
            "SQL interface NOT started: cannot listen on %s:%d (%s); set TICKCAST_SQL_PORT to a free port, "
            "or 0 to turn it off. The rest of the system runs.",
            settings.TICKCAST_API_HOST,
            settings.TICKCAST_SQL_PORT,
            exc.strerror or exc,
        )
        return None
    log.info(
        "SQL interface (ClickHouse HTTP, read-only) on %s, database %s; limits: %s s, %d bytes of memory, "
        "%d result rows, %d threads, %d queries at a time",
        server.url,
        database,
        settings.TICKCAST_SQL_MAX_EXECUTION_S,
        settings.TICKCAST_SQL_MAX_MEMORY_BYTES,
        settings.TICKCAST_SQL_MAX_RESULT_ROWS,
        settings.TICKCAST_SQL_MAX_THREADS,
        settings.TICKCAST_SQL_MAX_CONCURRENT,
    )
    return server
