"""Counts the records a source emits (for replay progress bars), passing items through.

Items are `(partition_key, [raw, ...])`, as every source of the signals flow emits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition


class _CountingPartition(StatefulSourcePartition[tuple[str, Any], Any]):
    def __init__(
        self, key: str, inner: StatefulSourcePartition[Any, Any], on_emit: Callable[[int], None] | None
    ) -> None:
        self._key = key
        self._inner = inner
        self._on_emit = on_emit
        self._emitted = 0

    def next_batch(self) -> list[tuple[str, Any]]:
        items = list(self._inner.next_batch())
        if self._on_emit and items:
            self._emitted += sum(len(batch) for _, batch in items)
            self._on_emit(self._emitted)
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

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _CountingPartition:
        return _CountingPartition(for_part, self.inner.build_part(step_id, for_part, resume_state), self.on_emit)
