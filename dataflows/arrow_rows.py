"""Parquet rows kept as Arrow columns on their way from the file to the decode step.

A Parquet file whose columns the columnar checks can read (`arrow_ticks.columnar`) is not
turned into one dict per row: its record batches travel as `ArrowRows` (file_lines.py ->
sources.py) and reach the decode step as an `ArrowBlock`, which `arrow_ticks.decode_block`
reads column-wise. Both still read like their usual selves (a list of row dicts, a list of
RawRecords), so any code that takes records one at a time works unchanged; a row becomes a
dict only when something asks for it (the per-record path, for the rows the columnar checks
do not vouch for).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa

from dataflows.raw_records import RawRecord, RecordBlock


class ArrowRows(Sequence[dict[str, Any]]):
    """Rows of one Parquet file as an Arrow table (zero-copy slices of its record batches)."""

    __slots__ = ("table",)

    def __init__(self, table: pa.Table | pa.RecordBatch) -> None:
        self.table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, k: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, k: slice) -> ArrowRows: ...
    def __getitem__(self, k: int | slice) -> dict[str, Any] | ArrowRows:
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            if step != 1:
                raise ValueError("ArrowRows slices are contiguous")
            return ArrowRows(self.table.slice(start, max(0, stop - start)))
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self.table.slice(k, 1).to_pylist()[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.table.to_pylist())

    def dicts(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Rows `rows` as dicts, in one Arrow call."""
        return self.table.take(pa.array(rows, pa.int64())).to_pylist()


def joined(parts: Sequence[Sequence[Any]]) -> Sequence[Any]:
    """The records of `parts` in order: one ArrowRows when every non-empty part is one, all of
    one schema (one file, or files of one schema), else a list."""
    held = [p for p in parts if len(p)]
    tables = [p.table for p in held if isinstance(p, ArrowRows)]
    if held and len(tables) == len(held) and all(t.schema == tables[0].schema for t in tables):
        return held[0] if len(held) == 1 else ArrowRows(pa.concat_tables(tables))
    return [r for part in held for r in part]


class ArrowBlock(RecordBlock):
    """A RawBatch of Parquet rows, no ingest hints and no keys: of one file, or of several files
    of one schema merged by ingest time (a folder of daily exports). Record k came from
    `names[name_idx[k]]` (`name_idx` None: all from `names[0]`). Reads like a list of
    RawRecords; `rows.table` is what the decode step reads."""

    __slots__ = ("_dicts", "name_idx", "names", "rows")

    def __init__(self, names: str | Sequence[str], rows: ArrowRows, name_idx: np.ndarray | None = None) -> None:
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.rows = rows
        self.name_idx = name_idx
        self._dicts: dict[int, dict[str, Any]] = {}  # rows already asked for as dicts

    @classmethod
    def concat(cls, blocks: Sequence[ArrowBlock]) -> ArrowBlock:
        joined_rows = joined([b.rows for b in blocks])
        assert isinstance(joined_rows, ArrowRows)
        names, name_idx = cls.merged_names(blocks)
        return cls(names, joined_rows, None if len(names) == 1 else name_idx)

    def prefetch(self, rows: np.ndarray) -> None:
        """Make rows `rows` dicts now, in one Arrow call (the rows the per-record path will take)."""
        if rows.size:
            self._dicts.update(zip(rows.tolist(), self.rows.dicts(rows), strict=True))

    def __len__(self) -> int:
        return len(self.rows)

    def _record(self, k: int) -> RawRecord:
        row = self._dicts.get(k)
        if row is None:
            row = self.rows[k]
            self._dicts[k] = row
        return (self.name(k), row, None)

    def __iter__(self) -> Iterator[RawRecord]:
        if self.name_idx is None:
            return ((self.names[0], row, None) for row in self.rows)
        names = [self.names[i] for i in self.name_idx.tolist()]
        return ((name, row, None) for name, row in zip(names, self.rows, strict=True))

    def __repr__(self) -> str:
        return f"ArrowBlock({self.names!r}, {len(self)} rows)"
