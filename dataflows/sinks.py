"""Sinks: batched idempotent ClickHouse writes, and live events to the bus (+ `live_events`).

Writes run on a background thread so a ClickHouse insert (~5–60 ms) does not stall the
dataflow's worker. They stay crash-safe: these are *stateful* sink partitions, and Bytewax
asks each for a snapshot at every epoch end — `snapshot()` waits until every write handed
over so far is done (or raises its error), so no epoch is committed before its rows are in
ClickHouse. A crash loses at most the current epoch, which the resume replays, and the
replay writes the same natural keys (ReplacingMergeTree), so nothing is duplicated in FINAL
queries. Batching happens upstream (`dataflows.batching`), in the snapshotted state.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from tickcast import metrics
from tickcast.bus import Event, EventBus, IdClock, events_table
from tickcast.store import Store

log = logging.getLogger(__name__)


class BackgroundWriter:
    """One FIFO worker thread; `flush()` blocks until everything submitted is written.

    `write` receives every item queued at that moment as one list, so a burst of small
    batches becomes one ClickHouse insert (~5 ms each, whatever the size) instead of a queue.
    """

    def __init__(self, write: Callable[[list[Any]], None], *, name: str, max_pending: int = 64) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(max_pending)  # full queue = backpressure on the flow
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, item: Any) -> None:
        self._raise()
        self._queue.put(item)

    def flush(self) -> None:
        self._queue.join()
        self._raise()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self._error is None:  # after a failure nothing more is written: the flow must restart
                    self._write(items)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the worker thread
                self._error = exc
            finally:
                for _ in items:
                    self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"a background ClickHouse write failed: {self._error}") from self._error


# Input item shape: (table, (table, [piece, ...])) after batching; a piece is a list of
# dict rows, a pyarrow.Table or a ColumnBlock (see Store.insert_pieces).
Piece = Any
TableBatch = tuple[str, list[Piece]]


def write_with_retries(store: Store, table: str, pieces: list[Piece], retries: int = 3) -> None:
    rows = sum(len(piece) for piece in pieces)
    for attempt in range(retries + 1):
        try:
            store.insert_pieces(table, pieces)
            metrics.STORE_WRITES.labels(table).inc(rows)
            return
        except Exception:
            metrics.STORE_WRITE_ERRORS.labels(table).inc()
            if attempt == retries:
                log.exception("giving up writing %d rows to %s", rows, table)
                raise  # the flow stops; a restart resumes from the last snapshot
            time.sleep(0.2 * 2**attempt)
            log.warning("retrying write of %d rows to %s (attempt %d)", rows, table, attempt + 2)


class LiveGate:
    """Live work before table rows, in a live flow: the table writer holds off between its
    inserts while the flow is busy with live records (it was active within `quiet_s`) or a
    store-first event batch is waiting, for at most `max_wait_s` per insert.

    The writer threads and the flow share one GIL, and a table insert holds it for most of
    its Python-side conversion: a candle burst that overlapped one ran ~30 % slower. Rows
    reach ClickHouse at most `max_wait_s` later; crash safety is unchanged (a snapshot still
    waits for every write). Replays have no gate and write at full speed.
    """

    def __init__(self, quiet_s: float = 0.03, max_wait_s: float = 0.25) -> None:
        self._pending = 0
        self._last_activity = 0.0
        self._changed = threading.Condition()
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s

    def touch(self) -> None:
        self._last_activity = time.monotonic()  # a float store: no lock on the flow's hot path

    def submitted(self) -> None:
        with self._changed:
            self._pending += 1

    def done(self, n: int) -> None:
        with self._changed:
            self._pending -= n
            if self._pending <= 0:
                self._changed.notify_all()

    def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait_s
        with self._changed:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                if self._pending > 0:
                    self._changed.wait(deadline - now)
                    continue
                quiet_for = now - self._last_activity
                if quiet_for >= self.quiet_s:
                    return
                self._changed.wait(min(self.quiet_s - quiet_for, deadline - now))


class _StorePartition(StatefulSinkPartition[TableBatch, None]):
    def __init__(self, store: Store, retries: int, gate: LiveGate | None) -> None:
        self.writer = BackgroundWriter(self._write, name="clickhouse-writer")
        self.store = store
        self.retries = retries
        self.gate = gate

    def _write(self, batches: list[TableBatch]) -> None:
        by_table: dict[str, list[Piece]] = {}
        for table, pieces in batches:
            by_table.setdefault(table, []).extend(pieces)
        for table, pieces in by_table.items():
            if self.gate is not None:
                self.gate.wait()
            write_with_retries(self.store, table, pieces, self.retries)

    def write_batch(self, values: list[TableBatch]) -> None:
        for item in values:
            self.writer.submit(item)

    def snapshot(self) -> None:
        self.writer.flush()  # the epoch's rows are in ClickHouse before the epoch commits
        return None

    def close(self) -> None:
        self.writer.flush()


class StoreSink(FixedPartitionedSink[TableBatch, None]):
    def __init__(self, store_factory: Callable[[], Store], *, retries: int = 3, gate: LiveGate | None = None) -> None:
        self.store_factory = store_factory
        self.retries = retries
        self.gate = gate

    def list_parts(self) -> list[str]:
        return ["store"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(self.store_factory(), self.retries, self.gate)


# Input item shape: ("live", ("events", [(stream, data, symbol, ts_ms), ...])) — one step
# activation's live events, in order (see dataflows.outputs).
EventItem = tuple[str, list[tuple[str, dict[str, Any], "str | None", int]]]


class _EventPartition(StatefulSinkPartition[EventItem, None]):
    """Every event is stored in `live_events` (for Last-Event-ID resume) and published.

    With a bus that can hold unstored events (the in-process `LocalBus`: the SSE clients are
    in this process) events are published at once and stored on the writer thread; the bus
    keeps them until stored, and a resume reads them from there. Otherwise (Kafka fan-out
    to API replicas, which can only resume from ClickHouse) each batch is stored first and
    then published, in order.
    """

    def __init__(self, bus: EventBus | None, store: Store | None, ids: IdClock, gate: LiveGate | None) -> None:
        self.bus = bus
        self.store = store
        self.ids = ids
        self.publish_first = store is not None and hasattr(bus, "publish_unstored")
        self.gate = gate
        self.writer = BackgroundWriter(self._write, name="live-events")

    def _write(self, batches: list[list[Event]]) -> None:
        events = [event for batch in batches for event in batch]
        try:
            if self.publish_first and self.gate is not None:
                self.gate.wait()  # already published: storing them is no more urgent than table rows
            if self.store is not None:
                self.store.insert_pieces("live_events", [events_table(events)])
            if self.publish_first:
                self.bus.mark_stored(events)  # type: ignore[union-attr]
            elif self.bus is not None:
                for event in events:
                    self.bus.publish(event)
        finally:
            if self.gate is not None and not self.publish_first:
                self.gate.done(len(batches))

    def write_batch(self, values: list[EventItem]) -> None:
        items = [item for _, batch in values for item in batch]
        events = [
            Event(stream, event_id, data, symbol, int(ts))
            for event_id, (stream, data, symbol, ts) in zip(self.ids.take(len(items)), items, strict=True)
        ]
        if not events:
            return
        if self.publish_first:
            self.bus.publish_unstored(events)  # type: ignore[union-attr]
        elif self.gate is not None:
            self.gate.submitted()
        self.writer.submit(events)

    def snapshot(self) -> None:
        self.writer.flush()
        return None

    def close(self) -> None:
        self.writer.flush()


class EventSink(FixedPartitionedSink[EventItem, None]):
    """Stores each event in `live_events` (for Last-Event-ID resume) and publishes it."""

    def __init__(
        self,
        bus: EventBus | None,
        store_factory: Callable[[], Store] | None,
        ids: IdClock,
        gate: LiveGate | None = None,
    ) -> None:
        self.bus = bus
        self.store_factory = store_factory
        self.ids = ids
        self.gate = gate

    def list_parts(self) -> list[str]:
        return ["live"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _EventPartition:
        store = self.store_factory() if self.store_factory else None
        return _EventPartition(self.bus, store, self.ids, self.gate)
