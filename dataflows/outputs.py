"""Per-activation output buffer of the stateful steps.

Steps append `("table", name, row)` items as they go (or whole pieces with `add_table`,
the columnar hot paths), `("event", stream, data, symbol, ts_ms)` live events and
`("features" | "label", row)` model inputs. `done()` hands Bytewax a few items per
activation instead of one per row (~1 µs each, per step downstream):

    ("rows", table, rows)         one list of dict rows per table
    ("rows", table, Pieces)       the table's columnar pieces (`pyarrow.Table` or
                                  `tickcast.store.ColumnBlock`; one per symbol in a shard)
    ("events", [(stream, data, symbol, ts_ms), ...])    in the order they were appended
    ("model", [("features" | "label", row), ...])       in the order they were appended
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

EventTuple = tuple[str, dict[str, Any], "str | None", int]


class Pieces(list[Any]):
    """Columnar pieces of one table from one activation, moved downstream as one item."""

    @property
    def num_rows(self) -> int:
        return sum(piece.num_rows for piece in self)


def rows_in(piece: Any) -> int:
    """Rows in a ("rows", table, piece) item's piece: dict rows or `Pieces`."""
    return piece.num_rows if isinstance(piece, Pieces) else len(piece)


def flat_pieces(pieces: list[Any]) -> list[Any]:
    """What `Store.insert_pieces` takes: dict-row lists and single columnar pieces."""
    return [p for piece in pieces for p in (piece if isinstance(piece, Pieces) else (piece,))]


class Out(list[tuple[Any, ...]]):
    def __init__(self) -> None:
        super().__init__()
        self.tables: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.columnar: defaultdict[str, list[Any]] = defaultdict(list)
        self.events: list[EventTuple] = []
        self.model: list[tuple[str, dict[str, Any]]] = []

    def append(self, item: tuple[Any, ...]) -> None:
        tag = item[0]
        if tag == "table":
            self.tables[item[1]].append(item[2])
        elif tag == "event":
            self.events.append(item[1:])
        elif tag == "features" or tag == "label":
            self.model.append(item)
        else:
            super().append(item)

    def add_table(self, name: str, table: Any) -> None:
        """A piece of rows for table `name`: a pyarrow.Table or ColumnBlock (empty ones are
        dropped), or a list of dict rows."""
        if isinstance(table, list):
            self.tables[name].extend(table)
        elif table.num_rows:
            self.columnar[name].append(table)

    def done(self) -> list[tuple[Any, ...]]:
        items = [*self, *(("rows", table, rows) for table, rows in self.tables.items())]
        items.extend(("rows", table, Pieces(pieces)) for table, pieces in self.columnar.items())
        if self.events:
            items.append(("events", self.events))
        if self.model:
            items.append(("model", self.model))
        return items
