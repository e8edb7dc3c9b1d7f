"""Per-activation output buffer of the stateful steps.

Steps append `TableRow(table, row)` items as they go (or whole pieces with `add_table`,
the columnar hot paths), `LiveEvent(stream, data, symbol, ts_ms)` live events and
`Features | Label | Progress` model inputs (types in `dataflows.items`). `done()` hands
Bytewax a few items per activation instead of one per row (~1 µs each, per step downstream):

    Rows(table, rows)             one list of dict rows per table
    Rows(table, Pieces)           the table's columnar pieces (`pyarrow.Table` or
                                  `tickcast.store.ColumnBlock`; one per symbol in a shard)
    Events([LiveEvent, ...])      in the order they were appended
    ModelInputs([Features | Label | Progress, ...])    in the order they were appended

Any other item (`ShardWork`, `TradeBars`, ...) is handed on as it is, before those.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dataflows.items import Events, Features, Label, LiveEvent, ModelInputs, Rows, TableRow
from dataflows.progress import Progress


class Pieces(list[Any]):
    """Columnar pieces of one table from one activation, moved downstream as one item."""

    @property
    def num_rows(self) -> int:
        return sum(piece.num_rows for piece in self)


def rows_in(piece: Any) -> int:
    """Rows in a `Rows` item's piece: dict rows or `Pieces`."""
    return piece.num_rows if isinstance(piece, Pieces) else len(piece)


def flat_pieces(pieces: list[Any]) -> list[Any]:
    """What `Store.insert_pieces` takes: dict-row lists and single columnar pieces."""
    return [p for piece in pieces for p in (piece if isinstance(piece, Pieces) else (piece,))]


class Out(list[tuple[Any, ...]]):
    def __init__(self) -> None:
        super().__init__()
        self.tables: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.columnar: defaultdict[str, list[Any]] = defaultdict(list)
        self.events: list[LiveEvent] = []
        self.model: list[Features | Label | Progress] = []

    def append(self, item: Any) -> None:
        cls = item.__class__  # routed by type: one identity check per kind, as cheap as the old tag compare
        if cls is TableRow:
            self.tables[item[0]].append(item[1])
        elif cls is LiveEvent:
            self.events.append(item)
        elif cls is Features or cls is Label or cls is Progress:
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
        items: list[tuple[Any, ...]] = [*self, *(Rows(table, rows) for table, rows in self.tables.items())]
        items.extend(Rows(table, Pieces(pieces)) for table, pieces in self.columnar.items())
        if self.events:
            items.append(Events(self.events))
        if self.model:
            items.append(ModelInputs(self.model))
        return items
