"""`Store.migrate` records each migration it applies (version, file name, when) in
schema_migrations, in SQL rather than through Arrow (tickcast/store.py), and applies none twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sql


def test_every_migration_is_recorded_once_with_its_name_and_time(store: Any) -> None:
    rows = store.rows(
        "SELECT version, name, toUnixTimestamp64Milli(applied_at) AS at, toTypeName(applied_at) AS type "
        "FROM {db}.schema_migrations FINAL ORDER BY version"
    )
    assert [(r["version"], r["name"]) for r in rows] == [(v, name) for v, name, _ in sql.migrations()]
    now = int(time.time() * 1000)
    assert all(now - 3_600_000 < r["at"] <= now for r in rows)
    assert {r["type"] for r in rows} == {"DateTime64(3, 'UTC')"}
    assert store.migrate() == []
    assert store.count("schema_migrations") == len(rows)


def test_a_migration_added_later_is_applied_and_recorded_alone(store: Any, monkeypatch: Any) -> None:
    known = sql.migrations()
    extra = (
        known[-1][0] + 1,
        f"{known[-1][0] + 1:03d}_extra.sql",
        "CREATE TABLE IF NOT EXISTS {db}.extra (x UInt8) ENGINE = ReplacingMergeTree ORDER BY x;",
    )
    monkeypatch.setattr(sql, "migrations", lambda: [*known, extra])
    before = datetime.now(UTC)
    assert store.migrate() == [extra[1]]
    row = store.rows(
        "SELECT name, applied_at FROM {db}.schema_migrations FINAL WHERE version = {v:UInt32}", {"v": extra[0]}
    )
    assert row[0]["name"] == extra[1]
    assert abs((row[0]["applied_at"].replace(tzinfo=UTC) - before).total_seconds()) < 60
    assert store.count("extra") == 0
