"""Counts the records a source emits (for replay progress bars), passing items through.

Items are `(partition_key, [raw, ...])`, as every source of the signals flow emits.
`on_emit` gets the total over every partition of the source, not one partition's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition


class _CountingPartition(StatefulSourcePartition[tuple[str, Any], Any]):
    def __init__(self, key: str, inner: StatefulSourcePartition[Any, Any], source: CountingSource) -> None:
        self._key = key
        self._inner = inner
        self._source = source

    def next_batch(self) -> list[tuple[str, Any]]:
        items = list(self._inner.next_batch())
        if items:
            self._source.add(self._key, sum(len(batch) for _, batch in items))
        return items

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class CountingSource(FixedPartitionedSource[tuple[str, Any], Any]):
    def __init__(
        self, inner: FixedPartitionedSource[Any, Any], *, on_emit: Callable[[int], None] | None = None
    ) -> None:
        self.inner = inner
        self.on_emit = on_emit
        self.emitted: dict[str, int] = {}  # records emitted per partition in this run

    def add(self, part: str, n: int) -> None:
        self.emitted[part] = self.emitted.get(part, 0) + n
        if self.on_emit:
            self.on_emit(sum(self.emitted.values()))

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _CountingPartition:
        return _CountingPartition(for_part, self.inner.build_part(step_id, for_part, resume_state), self)
