"""Per-activation output buffer of the stateful steps.

Steps append `("table", name, row)` items as they go (or whole pieces with `add_table`,
the columnar hot paths), `("event", stream, data, symbol, ts_ms)` live events and
`("features" | "label", row)` model inputs. `done()` hands Bytewax a few items per
activation instead of one per row (~1 µs each, per step downstream):

    ("rows", table, piece)        one list of dict rows per table, plus each columnar piece
                                  (`pyarrow.Table` or `tickcast.store.ColumnBlock`)
    ("events", [(stream, data, symbol, ts_ms), ...])    in the order they were appended
    ("model", [("features" | "label", row), ...])       in the order they were appended
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

EventTuple = tuple[str, dict[str, Any], "str | None", int]


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
        for table, pieces in self.columnar.items():
            items.extend(("rows", table, piece) for piece in pieces)
        if self.events:
            items.append(("events", self.events))
        if self.model:
            items.append(("model", self.model))
        return items
