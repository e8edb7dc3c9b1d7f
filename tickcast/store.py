"""The ClickHouse store: one clickhouse-connect client for `chdb:///dir` or `http(s)://host:port`.

Writes go through Arrow (one columnar insert per batch; ~2M rows/s on chdb, while
a small insert costs ~4 ms), so callers batch. chdb is an in-process engine that
one process may open at one path at a time, and its handle is not meant for
concurrent use, so every call holds one lock.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
import numpy as np
import pyarrow as pa

import sql

log = logging.getLogger(__name__)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class StoreError(RuntimeError):
    pass


class StoreDataError(StoreError):
    """Rows the store can never take as they are (a missing column, a null in a required one, a
    type Arrow cannot convert): retrying the same insert cannot succeed, unlike a store fault."""


CHDB_SCHEME = "chdb://"


class StoreMode(StrEnum):
    """Where the store lives, decided once from the URL (`store_mode`, `Settings.store_mode`)."""

    EMBEDDED = "embedded"  # chdb://<dir>: the engine inside this process; one process per directory
    SERVER = "server"  # http(s)://: a ClickHouse server, shared by every process


def store_mode(url: str) -> StoreMode:
    return StoreMode.EMBEDDED if url.startswith(CHDB_SCHEME) else StoreMode.SERVER


def chdb_dir(url: str) -> Path | None:
    """The directory of an embedded (chdb://) store URL, as written (see `resolve_store_url`); else None."""
    return Path(url[len(CHDB_SCHEME) :]) if store_mode(url) is StoreMode.EMBEDDED else None


def resolve_store_url(url: str) -> str:
    """Make a chdb URL's path absolute (`chdb:///./var/x` means ./var/x relative to the working dir)."""
    if store_mode(url) is not StoreMode.EMBEDDED:
        return url
    raw = url[len(CHDB_SCHEME) :]
    if raw.startswith("/./") or raw.startswith("/../"):
        raw = raw[1:]
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"{CHDB_SCHEME}{path}"


def _nan_to_null(batch: pa.Table) -> pa.Table:
    """NaN in a Nullable float column is stored as NULL (a missing feature, not a number)."""
    import pyarrow.compute as pc

    for i, field in enumerate(batch.schema):
        if field.nullable and pa.types.is_floating(field.type):
            column = batch.column(i)
            if pc.any(pc.is_nan(column)).as_py():
                batch = batch.set_column(i, field, pc.if_else(pc.is_nan(column), None, column))
    return batch


@dataclass(frozen=True, slots=True)
class ColumnBlock:
    """Rows as numpy columns: `arrays` (1-D, one per column), `matrix` (2-D, one column per
    name of `matrix_names`) and `constants` (one value for every row, e.g. the symbol).

    The flow's per-symbol steps emit these instead of Arrow tables: building a small
    Arrow table costs ~50 µs, so the writer turns all blocks of a batch into one table.
    Blocks inserted together must have the same columns.
    """

    arrays: dict[str, np.ndarray]
    constants: dict[str, Any]
    matrix: np.ndarray | None = None
    matrix_names: tuple[str, ...] = ()

    @property
    def num_rows(self) -> int:
        if self.arrays:
            return len(next(iter(self.arrays.values())))
        return 0 if self.matrix is None else len(self.matrix)

    def __len__(self) -> int:
        return self.num_rows

    @staticmethod
    def to_arrow(blocks: Sequence[ColumnBlock]) -> pa.Table:
        sizes = np.array([b.num_rows for b in blocks])
        first = blocks[0]
        columns: dict[str, pa.Array] = {}
        for name in first.constants:
            values = pa.array([b.constants[name] for b in blocks])
            columns[name] = pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(len(blocks)), sizes)), values
            ).cast(values.type)
        for name in first.arrays:
            columns[name] = pa.array(np.concatenate([b.arrays[name] for b in blocks]))
        if first.matrix is not None:
            matrix = np.concatenate([b.matrix for b in blocks])
            for j, name in enumerate(first.matrix_names):
                columns[name] = pa.array(matrix[:, j])
        return pa.table(columns)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The schema's columns of `table`, cast to the schema's types (missing column: KeyError)."""
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            raise KeyError(f"column {field.name!r} is missing")
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type) and pa.types.is_integer(column.type):
            column = column.cast(pa.int64()).cast(field.type)  # epoch ms ints, as in dict rows
        columns.append(column.cast(field.type) if column.type != field.type else column)
    return pa.Table.from_arrays(columns, schema=schema)


def _arrow_type(ch_type: str) -> tuple[pa.DataType, bool]:
    nullable = ch_type.startswith("Nullable(")
    inner = ch_type[len("Nullable(") : -1] if nullable else ch_type
    if inner.startswith("LowCardinality("):
        inner = inner[len("LowCardinality(") : -1]
        if inner.startswith("Nullable("):
            nullable, inner = True, inner[len("Nullable(") : -1]
    if inner.startswith("DateTime64"):
        return pa.timestamp("ms", tz="UTC"), nullable
    simple = {
        "String": pa.string(),
        "Float64": pa.float64(),
        "Float32": pa.float32(),
        "UInt8": pa.uint8(),
        "UInt16": pa.uint16(),
        "UInt32": pa.uint32(),
        "UInt64": pa.uint64(),
        "Int8": pa.int8(),
        "Int16": pa.int16(),
        "Int32": pa.int32(),
        "Int64": pa.int64(),
    }
    if inner not in simple:
        raise StoreError(f"no Arrow mapping for ClickHouse type {ch_type}")
    return simple[inner], nullable


class Store:
    """What the system asks of ClickHouse: migrate, insert batches, run named queries."""

    def __init__(self, url: str, *, database: str = "tickcast") -> None:
        if not _IDENT_RE.match(database):
            raise StoreError(f"database name must be an identifier, got {database!r}")
        self.url = resolve_store_url(url)
        self.mode = store_mode(self.url)
        self.database = database
        self._lock = threading.RLock()
        self._client: Any = None
        self._schemas: dict[str, pa.Schema] = {}

    # --- connection -------------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        try:
            if self.mode is StoreMode.EMBEDDED:
                return clickhouse_connect.get_client(dsn=self.url)
            parsed = urlparse(self.url)
            return clickhouse_connect.get_client(
                host=parsed.hostname or "localhost",
                port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                username=parsed.username or "default",
                password=parsed.password or "",
                secure=parsed.scheme == "https",
            )
        except Exception as exc:
            hint = (
                " (a chdb directory can be opened by one process at a time: is `tickcast up` "
                "already running on it? Query it with `tickcast sql` or its SQL port, use the API, or stop it first.)"
                if self.mode is StoreMode.EMBEDDED
                else ""
            )
            raise StoreError(f"cannot open ClickHouse store {self.url}: {exc}{hint}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def ping(self) -> bool:
        try:
            self.command("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - health check reports, never raises
            return False

    # --- SQL -----------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text.replace("{db}", self.database)

    def command(self, text: str, parameters: Mapping[str, Any] | None = None) -> Any:
        with self._lock:
            return self.client.command(self._sql(text), parameters=parameters)

    def rows(self, text: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run a query; rows as dicts."""
        with self._lock:
            result = self.client.query(self._sql(text), parameters=parameters)
            names = result.column_names
            return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def named(self, name: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run `sql/queries/<name>.sql` with bound parameters."""
        return self.rows(sql.query(name), parameters)

    def arrow(self, text: str, parameters: Mapping[str, Any] | None = None) -> pa.Table:
        with self._lock:
            return self.client.query_arrow(self._sql(text), parameters=parameters)

    def df(self, text: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return self.arrow(text, parameters).to_pandas()

    def scalar(self, text: str, parameters: Mapping[str, Any] | None = None) -> Any:
        rows = self.rows(text, parameters)
        return next(iter(rows[0].values())) if rows else None

    # --- schema ---------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the numbered files of sql/migrations/ not yet applied. Idempotent."""
        with self._lock:
            self.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            self.command(
                "CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
                "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
                "ENGINE = ReplacingMergeTree ORDER BY version"
            )
            done = {r["version"] for r in self.rows("SELECT version FROM {db}.schema_migrations FINAL")}
            applied = []
            for version, name, text in sql.migrations():
                if version in done:
                    continue
                for statement in sql.split_statements(text):
                    self.command(statement)
                # One row in SQL, not through Arrow (`insert_rows`): that would look the table's
                # columns up and convert a Python list, whose first conversion imports pandas
                # (pyarrow probes for it): ~0.25 s of a fresh store's start-up for six rows.
                self.command(
                    "INSERT INTO {db}.schema_migrations (version, name, applied_at) "
                    "SELECT {version:UInt32}, {name:String}, fromUnixTimestamp64Milli({at:Int64}, 'UTC')",
                    {"version": version, "name": name, "at": int(time.time() * 1000)},
                )
                applied.append(name)
                log.info("applied migration %s to %s", name, self.database)
            self._schemas.clear()
            return applied

    def schema(self, table: str) -> pa.Schema:
        if table not in self._schemas:
            cols = self.rows(
                "SELECT name, type FROM system.columns WHERE database = {d:String} AND table = {t:String} "
                "AND default_kind = '' ORDER BY position",  # columns with defaults fill themselves
                {"d": self.database, "t": table},
            )
            if not cols:
                raise StoreError(f"table {self.database}.{table} does not exist; run `tickcast db migrate`")
            fields = []
            for col in cols:
                arrow_type, nullable = _arrow_type(col["type"])
                fields.append(pa.field(col["name"], arrow_type, nullable=nullable))
            self._schemas[table] = pa.schema(fields)
        return self._schemas[table]

    # --- writes ---------------------------------------------------------------------------
    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert dict rows in one columnar write. Timestamps are epoch ms ints."""
        return self.insert_pieces(table, [list(rows)]) if rows else 0

    def insert_pieces(self, table: str, pieces: Sequence[Sequence[Mapping[str, Any]] | pa.Table | ColumnBlock]) -> int:
        """Insert dict-row lists, Arrow tables and column blocks (the flow's columnar paths) in one write.

        Arrow pieces may carry extra columns and narrower types (int8 for Int8, int64 ms for
        DateTime64): they are selected and cast to the table's schema.
        """
        schema = self.schema(table)
        rows = [row for piece in pieces if isinstance(piece, (list, tuple)) for row in piece]
        tables = [piece for piece in pieces if isinstance(piece, pa.Table) and piece.num_rows]
        blocks = [piece for piece in pieces if isinstance(piece, ColumnBlock) and piece.num_rows]
        if blocks:
            tables.append(ColumnBlock.to_arrow(blocks))
        by_schema: dict[pa.Schema, list[pa.Table]] = {}
        for t in tables:  # pieces of one producer share a schema: concatenate, then convert once
            by_schema.setdefault(t.schema, []).append(t)
        try:
            parts = [pa.Table.from_pylist(rows, schema=schema)] if rows else []
            parts += [
                _conform(group[0] if len(group) == 1 else pa.concat_tables(group), schema)
                for group in by_schema.values()
            ]
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
            raise StoreDataError(f"insert into {table}: {exc}") from exc
        if not parts:
            return 0
        batch = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        if batch.num_columns and batch.column(0).num_chunks > 1:
            # one chunk per piece (a replay batch: one per symbol) costs ClickHouse a record
            # batch each to parse; one contiguous batch halves the insert
            batch = batch.combine_chunks()
        return self._insert_table(table, _nan_to_null(batch))

    def _insert_table(self, table: str, batch: pa.Table) -> int:
        schema = batch.schema
        for field in schema:
            if not field.nullable and batch.column(field.name).null_count:
                raise StoreDataError(f"insert into {table}: column {field.name!r} is required but has nulls")
        with self._lock:
            self.client.insert_arrow(f"{self.database}.{table}", batch)
        return batch.num_rows

    def count(self, table: str, where: str = "1") -> int:
        return int(self.scalar(f"SELECT count() FROM {{db}}.{table} FINAL WHERE {where}") or 0)
