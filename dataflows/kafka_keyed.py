"""Tags each batch of a source partition with the partition's key.

The signals flow keys its first stateful step by source partition (so each
partition's records keep their order); `KafkaPairSource` emits bare batches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition


class _KeyedPartition(StatefulSourcePartition[tuple[str, Any], Any]):
    def __init__(self, key: str, inner: StatefulSourcePartition[Any, Any], on_emit: Callable[[int], None] | None) -> None:
        self._key = key
        self._inner = inner
        self._on_emit = on_emit
        self._emitted = 0

    def next_batch(self) -> list[tuple[str, Any]]:
        batches = list(self._inner.next_batch())
        if self._on_emit and batches:
            self._emitted += sum(len(b) for b in batches)
            self._on_emit(self._emitted)
        return [(self._key, batch) for batch in batches]

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class KeyedSource(FixedPartitionedSource[tuple[str, Any], Any]):
    def __init__(self, inner: FixedPartitionedSource[Any, Any], *, on_emit: Callable[[int], None] | None = None) -> None:
        self.inner = inner
        self.on_emit = on_emit

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _KeyedPartition:
        return _KeyedPartition(for_part, self.inner.build_part(step_id, for_part, resume_state), self.on_emit)
