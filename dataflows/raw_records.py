"""What a source hands the decode step: `RawRecord`s, as a list or as a block of columns.

A block (`sources.RawBlock`: Kafka messages and file lines; `arrow_rows.ArrowBlock`: Parquet
rows) keeps its records as columns but reads like a list of RawRecords — index, slice,
iterate, compare with a list — so code that takes records one at a time needs no second path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import numpy as np

RawRecord = tuple[str, Any, "int | None"]  # (source_name, payload, ingest_hint_ms | None)


class RecordBlock(Sequence[RawRecord]):
    """The list-of-RawRecords reading of a block; a subclass gives `__len__` and `_record(k)`,
    and holds its records' source names: record k's is `names[name_idx[k]]` (`name_idx` None:
    all `names[0]`)."""

    __slots__ = ()
    names: tuple[str, ...]
    name_idx: np.ndarray | None

    def _record(self, k: int) -> RawRecord:
        raise NotImplementedError

    def name(self, k: int) -> str:
        return self.names[0 if self.name_idx is None else int(self.name_idx[k])]

    @staticmethod
    def merged_names(blocks: Sequence[RecordBlock]) -> tuple[tuple[str, ...], np.ndarray]:
        """The blocks' source names as one block's: (names, `name_idx` of every record)."""
        names = tuple(dict.fromkeys(n for b in blocks for n in b.names))
        index = {n: k for k, n in enumerate(names)}
        name_idx = [
            np.full(len(b), index[b.names[0]], np.int64)
            if b.name_idx is None
            else np.asarray([index[n] for n in b.names], np.int64)[b.name_idx]
            for b in blocks
        ]
        return names, np.concatenate(name_idx)

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
