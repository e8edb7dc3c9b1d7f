"""ClickHouse DDL migrations and the named queries the API runs, shipped as package data."""

from __future__ import annotations

import re
from importlib import resources

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL text) in version order."""
    folder = resources.files(__name__) / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_RE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def query(name: str) -> str:
    """The text of `sql/queries/<name>.sql`; parameters are bound by the client, never formatted in."""
    path = resources.files(__name__) / "queries" / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no named query {name!r} in sql/queries/")
    return path.read_text(encoding="utf-8")


def split_statements(text: str) -> list[str]:
    """Split a migration file on ';' at line ends, dropping comment-only chunks."""
    out = []
    for chunk in re.split(r";\s*(?:\n|$)", text):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(body)
    return out
