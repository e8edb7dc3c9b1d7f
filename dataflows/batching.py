"""Batch rows per key with a bound on latency.

Bytewax 0.21's `op.collect` restarts its timeout on every item (an idle timeout), so
a steady stream (ticks every few ms) is only flushed when `max_size` is reached. Here
the deadline is set by the *first* buffered item: a row waits at most `timeout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream, StatefulBatchLogic

from dataflows.snapshot import freeze, thaw


@dataclass
class _Buffer:
    items: list[Any] = field(default_factory=list)
    deadline: datetime | None = None
    size: int = 0


class _BatchLogic(StatefulBatchLogic[Any, list[Any], _Buffer]):
    def __init__(self, timeout: timedelta, max_size: int, recovery: bool, state: Any, size_of: Any) -> None:
        self.size_of = size_of
        self.timeout = timeout
        self.max_size = max_size
        self.recovery = recovery
        self.state: _Buffer = thaw(state) or _Buffer()

    def on_batch(self, values: list[Any]) -> tuple[list[list[Any]], bool]:
        if not self.state.items:
            self.state.deadline = datetime.now(UTC) + self.timeout
        self.state.items.extend(values)
        self.state.size += sum(self.size_of(v) for v in values)
        if self.state.size >= self.max_size:
            return self._flush()
        return [], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[list[Any]], bool]:
        return self._flush()

    def on_eof(self) -> tuple[list[list[Any]], bool]:
        return self._flush()

    def notify_at(self) -> datetime | None:
        return self.state.deadline if self.state.items else None

    def _flush(self) -> tuple[list[list[Any]], bool]:
        items, self.state = self.state.items, _Buffer()
        return [items], StatefulBatchLogic.DISCARD

    def snapshot(self) -> Any:
        # The buffer must survive a crash (rows not yet written), so it is part of the snapshot.
        return freeze(self.state, enabled=self.recovery)


def batch_by_key(
    step_id: str,
    up: KeyedStream[Any],
    *,
    timeout: timedelta,
    max_size: int,
    recovery: bool,
    size_of: Any = lambda value: 1,
) -> Stream[tuple[str, list[Any]]]:
    """(key, value) -> (key, [value, ...]): flushed when the values' total `size_of` reaches
    `max_size` or the first of them is `timeout` old."""
    return op.stateful_batch(step_id, up, lambda state: _BatchLogic(timeout, max_size, recovery, state, size_of))
