"""What a source hands the decode step: `RawRecord`s, as a list or as a block of columns.

A block (`sources.RawBlock`: Kafka messages and file lines; `arrow_rows.ArrowBlock`: Parquet
rows) keeps its records as columns but reads like a list of RawRecords — index, slice,
iterate, compare with a list — so code that takes records one at a time needs no second path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

RawRecord = tuple[str, Any, "int | None"]  # (source_name, payload, ingest_hint_ms | None)


class RecordBlock(Sequence[RawRecord]):
    """The list-of-RawRecords reading of a block; a subclass gives `__len__` and `_record(k)`."""

    __slots__ = ()

    def _record(self, k: int) -> RawRecord:
        raise NotImplementedError

    @overload
    def __getitem__(self, k: int) -> RawRecord: ...
    @overload
    def __getitem__(self, k: slice) -> list[RawRecord]: ...
    def __getitem__(self, k: int | slice) -> RawRecord | list[RawRecord]:
        if isinstance(k, slice):
            return [self._record(j) for j in range(*k.indices(len(self)))]
        return self._record(int(k))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]
