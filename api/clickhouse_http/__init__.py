"""A read-only ClickHouse HTTP interface on the embedded store (`tickcast up`, TICKCAST_SQL_PORT).

Standard ClickHouse clients (clickhouse-connect, curl, Grafana's ClickHouse data source,
JDBC/DBeaver) query the in-process chdb engine that the flow writes to, while the flow runs.

- `request`: an HTTP request taken apart (query, params, settings, credentials);
- `settings_policy`: which client settings are applied, capped, ignored or refused;
- `guard`: what readonly mode lets through in a local engine, refused on the engine's parse;
- `engine`: one read-only chdb session per query, with the limits;
- `errors`: ClickHouse's error text, codes and HTTP statuses;
- `app` / `server`: the Starlette app and its uvicorn server on a thread of its own.
"""

from api.clickhouse_http.app import create_sql_app
from api.clickhouse_http.engine import ReadOnlyEngine
from api.clickhouse_http.server import SqlHttpServer, start_sql_server

__all__ = ["ReadOnlyEngine", "SqlHttpServer", "create_sql_app", "start_sql_server"]
