"""Sinks: batched idempotent ClickHouse writes, and live events to the bus (+ `live_events`).

Batching happens upstream in `op.collect` (its buffer is part of Bytewax's
snapshot; a buffer inside a sink would be lost on a crash). Writes are
idempotent (ReplacingMergeTree natural keys), so the at-least-once replay after a
resume never duplicates a row in FINAL queries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from tickcast import metrics
from tickcast.bus import Event, EventBus, IdClock
from tickcast.store import Store

log = logging.getLogger(__name__)

# Input item shape: (table, [row, ...]) after collect.
TableBatch = tuple[str, list[dict[str, Any]]]


class _StorePartition(StatelessSinkPartition[TableBatch]):
    def __init__(self, store: Store, retries: int) -> None:
        self.store = store
        self.retries = retries

    def write_batch(self, items: list[TableBatch]) -> None:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, rows in items:
            by_table.setdefault(table, []).extend(rows)
        for table, rows in by_table.items():
            self._write(table, rows)

    def _write(self, table: str, rows: list[dict[str, Any]]) -> None:
        for attempt in range(self.retries + 1):
            try:
                self.store.insert_rows(table, rows)
                metrics.STORE_WRITES.labels(table).inc(len(rows))
                return
            except Exception:
                metrics.STORE_WRITE_ERRORS.labels(table).inc()
                if attempt == self.retries:
                    log.exception("giving up writing %d rows to %s", len(rows), table)
                    raise  # the flow stops; a restart resumes from the last snapshot
                time.sleep(0.2 * 2**attempt)
                log.warning("retrying write of %d rows to %s (attempt %d)", len(rows), table, attempt + 2)


class StoreSink(DynamicSink[TableBatch]):
    def __init__(self, store_factory: Callable[[], Store], *, retries: int = 3) -> None:
        self.store_factory = store_factory
        self.retries = retries

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(self.store_factory(), self.retries)


# Input item shape: ("event", stream, data, symbol, ts_ms) — the flow's live events.
EventItem = tuple[str, str, dict[str, Any], "str | None", int]


class _EventPartition(StatelessSinkPartition[EventItem]):
    def __init__(self, bus: EventBus | None, store: Store | None, ids: IdClock) -> None:
        self.bus = bus
        self.store = store
        self.ids = ids

    def write_batch(self, items: list[EventItem]) -> None:
        events = [Event(stream, self.ids.next(), data, symbol, int(ts)) for _, stream, data, symbol, ts in items]
        if self.store is not None and events:
            self.store.insert_rows("live_events", [e.row() for e in events])
        if self.bus is not None:
            for event in events:
                self.bus.publish(event)


class EventSink(DynamicSink[EventItem]):
    """Stores each event (for Last-Event-ID resume), then publishes it."""

    def __init__(self, bus: EventBus | None, store_factory: Callable[[], Store] | None, ids: IdClock) -> None:
        self.bus = bus
        self.store_factory = store_factory
        self.ids = ids

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _EventPartition:
        store = self.store_factory() if self.store_factory else None
        return _EventPartition(self.bus, store, self.ids)
