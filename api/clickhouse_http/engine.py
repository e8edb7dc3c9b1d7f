"""Read-only queries on the in-process ClickHouse engine (chdb) that the flow writes to.

chdb hosts one engine per process and allows any number of connections to it; queries on
different connections run in parallel (the GIL is released while the engine works) and
each connection is a session of its own. So every query gets a fresh connection (~0.5 ms)
that is made read-only before the query touches it:

    connect with the limits (TICKCAST_SQL_*) and the hardening settings
    SET <the client's allowed settings>; USE <database>; SET readonly = 1
    formatQuerySingleLine(query)  -> guard.check   (the engine's own parse)
    run the query in the requested output format   (the engine writes every format itself)

The flow's `Store` keeps its own connection and lock; nothing here waits for it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from api.clickhouse_http import guard
from api.clickhouse_http.errors import ClickHouseError
from api.clickhouse_http.request import SqlRequest, escape_value
from api.clickhouse_http.settings_policy import Limits, SettingsPolicy

log = logging.getLogger(__name__)

# Engine settings no query may change (readonly=1 keeps them): no Python objects as tables, no
# introspection of the process's memory, and the lowest CPU priority for the query's threads
# (nice 19, reset when the query ends): on a busy machine the flow's threads go first.
HARDENING = {"allow_python_table_function": "0", "allow_introspection_functions": "0", "os_thread_priority": "19"}
DEFAULT_FORMAT = "TabSeparated"


@dataclass(frozen=True)
class QueryResult:
    body: bytes
    format: str
    summary: dict[str, str]


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_name(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class ReadOnlyEngine:
    """Queries on the chdb engine at `path`, each in a read-only session of its own."""

    def __init__(self, path: str, *, limits: Limits, database: str = "default") -> None:
        import chdb  # noqa: F401 - fail here, not at the first query, if it is missing

        self.path = os.path.realpath(path)
        self.limits = limits
        self.database = database
        self._connection_string = f"{self.path}?{urlencode({**limits.as_settings(), **HARDENING})}"
        current = self._probe("SELECT name, value FROM system.settings")
        self.policy = SettingsPolicy(limits, dict(current))
        version, timezone = self._probe("SELECT version(), timezone()")[0]
        self.version: str = version
        self.timezone: str = timezone

    def _connect(self) -> Any:
        import chdb

        try:
            return chdb.connect(self._connection_string)
        except Exception as exc:  # the engine refused the connection string: a server fault
            raise ClickHouseError(1001, f"cannot open a session on the engine at {self.path}: {exc}") from exc

    def _probe(self, sql: str) -> list[list[str]]:
        conn = self._connect()
        try:
            conn.query("SET readonly = 1")
            text = conn.query(sql, "JSONCompactEachRow").bytes().decode()
            return [[str(v) for v in json.loads(line)] for line in text.splitlines() if line]
        finally:
            conn.close()

    def default(self, setting: str) -> str | None:
        return self.policy.current.get(setting)

    def run(self, request: SqlRequest, settings: Mapping[str, str] | None = None) -> QueryResult:
        """Run one query read-only; engine errors come back as `ClickHouseError`.

        `settings` are the client's settings already resolved by `self.policy`.
        """
        conn = self._connect()
        try:
            try:
                if settings:
                    conn.query("SET " + ", ".join(f"{name} = {_quote(value)}" for name, value in settings.items()))
                conn.query(f"USE {_quote_name(request.database or self.database)}")
                conn.query("SET readonly = 1")
                canonical = self._canonical(conn, request.query)
                guard.check(canonical)
                fmt = guard.output_format(canonical) or request.default_format or DEFAULT_FORMAT
                started = time.perf_counter()
                result = conn.query(request.query, fmt, params=request.params)
                elapsed = time.perf_counter() - started
            except ClickHouseError:
                raise
            except Exception as exc:  # chdb raises RuntimeError / ChdbError with ClickHouse's text
                raise ClickHouseError.from_engine(str(exc)) from None
            body = result.bytes()
            return QueryResult(body, fmt, _summary(result, len(body), elapsed))
        finally:
            conn.close()

    @staticmethod
    def _canonical(conn: Any, query: str) -> str:
        """The engine's one-line rendering of `query`; a text that is not one statement is refused."""
        try:
            out = conn.query("SELECT formatQuerySingleLine({q:String})", "RawBLOB", params={"q": escape_value(query)})
        except Exception as exc:
            err = ClickHouseError.from_engine(str(exc))
            message = err.message.split("In scope SELECT formatQuerySingleLine", 1)[0].rstrip(" :.")
            raise ClickHouseError(err.code, message, err.name) from None
        return str(out.bytes().decode("utf-8", errors="replace"))


def _summary(result: Any, body_bytes: int, elapsed_s: float) -> dict[str, str]:
    """X-ClickHouse-Summary (ClickHouse sends every number as a string)."""

    def number(name: str) -> int:
        fn = getattr(result, name, None)
        try:
            return int(fn()) if fn is not None else 0
        except Exception:  # noqa: BLE001 - a missing statistic is reported as 0
            return 0

    read_rows = number("storage_rows_read")
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(number("storage_bytes_read")),
        "written_rows": "0",
        "written_bytes": "0",
        "total_rows_to_read": str(read_rows),
        "result_rows": str(number("rows_read")),
        "result_bytes": str(body_bytes),
        "elapsed_ns": str(int(elapsed_s * 1e9)),
    }
