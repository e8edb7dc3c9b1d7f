"""Sinks: batched idempotent ClickHouse writes, and live events to the bus (+ `live_events`).

Writes run on a background thread so a ClickHouse insert (~5–60 ms) does not stall the
dataflow's worker. They stay crash-safe: these are *stateful* sink partitions, and Bytewax
asks each for a snapshot at every epoch end — `snapshot()` waits until every write handed
over so far is done (or raises its error), so no epoch is committed before its rows are in
ClickHouse. A crash loses at most the current epoch, which the resume replays, and the
replay writes the same natural keys (ReplacingMergeTree), so nothing is duplicated in FINAL
queries. Batching happens upstream (`dataflows.batching`), in the snapshotted state.

When the store fails (disk full, server down) an insert is retried with a capped back-off
for as long as the fault lasts, `WriteMonitor` says so (`/healthz`, ingest answers 503),
and the sinks hold the flow — no new batch is queued behind a failing one — so what the
process holds in memory stays bounded (docs/reliability.md). Only rows the store can
never take (`StoreDataError`) stop the flow.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from dataflows.items import Events
from tickcast import metrics
from tickcast.bus import Event, EventPublisher, IdClock, events_table
from tickcast.gc_tuning import idle_collector
from tickcast.store import Store, StoreDataError

log = logging.getLogger(__name__)

# Back-off between attempts of a failing insert: RETRY_FIRST_BACKOFF_S, doubling, at most RETRY_MAX_BACKOFF_S.
RETRY_FIRST_BACKOFF_S = 0.2
RETRY_MAX_BACKOFF_S = 5.0


class WriteMonitor:
    """What the sinks tell the rest of the process about their inserts.

    - health: `failing` from an insert's failure until the next insert succeeds, with the
      error (`problem()` for /healthz); `wait_writable()` blocks while failing.
    - `on_written`: callbacks run on the writer thread after each successful insert with
      `(table, pieces)` (ingest receipts: a request that waits for its rows).
    - `urgent(table)`: when True, inserts into `table` skip the `LiveGate` (someone waits for them).
    - `abandon()`: shutdown gave up on the store; blocked hand-overs and closes return.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._failing: dict[str, tuple[float, int, str]] = {}  # table -> (since, attempts, last error)
        self.abandoned = threading.Event()
        self.on_written: list[Callable[[str, list[Any]], None]] = []
        self.on_failing: list[Callable[[str], None]] = []
        self.urgent: Callable[[str], bool] = lambda table: False

    @property
    def failing(self) -> bool:
        return bool(self._failing)

    def failed(self, table: str, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        with self._changed:
            entering = not self._failing
            since, attempts, _ = self._failing.get(table, (time.time(), 0, ""))
            self._failing[table] = (since, attempts + 1, error)
        metrics.STORE_WRITE_FAILING.set(1)
        if entering:
            problem = self.problem() or ""
            for callback in list(self.on_failing):
                callback(problem)

    def succeeded(self, table: str) -> None:
        if table not in self._failing:
            return
        with self._changed:
            self._failing.pop(table, None)
            if not self._failing:
                self._changed.notify_all()
                metrics.STORE_WRITE_FAILING.set(0)

    def problem(self) -> str | None:
        """None while inserts succeed; else what fails, since when, and the store's error."""
        with self._changed:
            failing = sorted(self._failing.items(), key=lambda kv: kv[1][0])
        if not failing:
            return None
        table, (since, attempts, error) = failing[0]
        at = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
        others = f" (and {', '.join(t for t, _ in failing[1:])})" if len(failing) > 1 else ""
        return (
            f"inserts into {table}{others} failing since {at} ({attempts} attempts, retried every "
            f"≤ {RETRY_MAX_BACKOFF_S:g} s): {error}"
        )

    def wait_writable(self, timeout: float | None = None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._failing or self.abandoned.is_set(), timeout)

    def written(self, table: str, pieces: list[Any]) -> None:
        for callback in self.on_written:
            callback(table, pieces)

    def abandon(self) -> None:
        self.abandoned.set()
        with self._changed:
            self._changed.notify_all()


class BackgroundWriter:
    """One FIFO worker thread; `flush()` blocks until everything submitted is written.

    `write` receives every item queued at that moment as one list, so a burst of small
    batches becomes one ClickHouse insert (~5 ms each, whatever the size) instead of a queue.
    While the monitor says the store is failing, `submit` waits (the flow holds) instead of
    queueing more behind the failing write.
    """

    def __init__(
        self,
        write: Callable[[list[Any]], None],
        *,
        name: str,
        max_pending: int = 64,
        monitor: WriteMonitor | None = None,
    ) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(max_pending)  # full queue = backpressure on the flow
        self._error: BaseException | None = None
        self._monitor = monitor
        self.name = name
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, item: Any) -> None:
        self._raise()
        if self._monitor is not None and self._monitor.failing:
            self._monitor.wait_writable()
        self._queue.put(item)

    def flush(self) -> None:
        self._queue.join()
        self._raise()

    @property
    def pending(self) -> int:
        """Items handed over and not written yet."""
        return self._queue.unfinished_tasks

    def close(self) -> bool:
        """Wait until everything handed over is written; never raises (Bytewax calls this while
        unwinding from another step's error too, where a second exception aborts the process).
        Returns early, with False, when the monitor abandons the store (shutdown deadline)."""
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks and not (self._monitor and self._monitor.abandoned.is_set()):
                done.wait(0.1)
        if self._queue.unfinished_tasks:
            log.error("%s: %d batch(es) not written at close: the store is failing", self.name, self.pending)
            return False
        if self._error is not None:
            log.error("%s: closed after a failed write: %s", self.name, self._error)
            return False
        return True

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


def write_with_retries(
    store: Store,
    table: str,
    pieces: list[Piece],
    retries: int | None = None,
    *,
    monitor: WriteMonitor | None = None,
) -> None:
    """Insert, retrying a failing store with back-off (0.2 s, doubling, ≤ RETRY_MAX_BACKOFF_S):
    forever by default (`retries` bounds it), until the monitor abandons the store. Rows the
    store can never take (`StoreDataError`) are not retried: the error is raised at once."""
    rows = sum(len(piece) for piece in pieces)
    attempt = 0
    while True:
        try:
            store.insert_pieces(table, pieces)
        except StoreDataError:
            metrics.STORE_WRITE_ERRORS.labels(table).inc()
            log.exception("cannot write %d rows to %s: the rows are invalid for the table (not retried)", rows, table)
            raise
        except Exception as exc:
            metrics.STORE_WRITE_ERRORS.labels(table).inc()
            if monitor is not None:
                monitor.failed(table, exc)
            gave_up = (retries is not None and attempt >= retries) or (monitor and monitor.abandoned.is_set())
            if gave_up:
                log.error("giving up writing %d rows to %s after %d attempts: %s", rows, table, attempt + 1, exc)
                raise
            delay = min(RETRY_MAX_BACKOFF_S, RETRY_FIRST_BACKOFF_S * 2 ** min(attempt, 30))
            log.warning(
                "store write failed: %d rows to %s, attempt %d (%s); retrying in %.1f s",
                rows,
                table,
                attempt + 1,
                str(exc).splitlines()[0][:200],
                delay,
            )
            if monitor is not None:
                monitor.abandoned.wait(delay)  # abandoned: one last attempt, then give up above
            else:
                time.sleep(delay)
            attempt += 1
            continue
        metrics.STORE_WRITES.labels(table).inc(rows)
        if attempt:
            log.warning("store write recovered: %d rows to %s after %d failed attempts", rows, table, attempt)
        if monitor is not None:
            monitor.succeeded(table)
            monitor.written(table, pieces)
        return


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
    def __init__(self, store: Store, retries: int | None, gate: LiveGate | None, monitor: WriteMonitor | None) -> None:
        self.writer = BackgroundWriter(self._write, name="clickhouse-writer", monitor=monitor)
        self.store = store
        self.retries = retries
        self.gate = gate
        self.monitor = monitor

    def _write(self, batches: list[TableBatch]) -> None:
        by_table: dict[str, list[Piece]] = {}
        for table, pieces in batches:
            by_table.setdefault(table, []).extend(pieces)
        for table, pieces in by_table.items():
            if self.gate is not None and not (self.monitor is not None and self.monitor.urgent(table)):
                self.gate.wait()
            write_with_retries(self.store, table, pieces, self.retries, monitor=self.monitor)

    def write_batch(self, values: list[TableBatch]) -> None:
        for item in values:
            self.writer.submit(item)

    def snapshot(self) -> None:
        self.writer.flush()  # the epoch's rows are in ClickHouse before the epoch commits
        return None

    def close(self) -> None:
        self.writer.close()


class StoreSink(FixedPartitionedSink[TableBatch, None]):
    """Table batches to ClickHouse on a background thread (see the module docstring).

    `retries` None: a failing store is retried for as long as the fault lasts."""

    def __init__(
        self,
        store_factory: Callable[[], Store],
        *,
        retries: int | None = None,
        gate: LiveGate | None = None,
        monitor: WriteMonitor | None = None,
        parts: list[str] | None = None,
    ) -> None:
        self.store_factory = store_factory
        self.retries = retries
        self.gate = gate
        self.monitor = monitor
        # The partitions this process's workers list (`dataflows.placement`): in a cluster
        # with a chdb store, none on processes other than 0, so Bytewax builds the writer there.
        self.parts = ["store"] if parts is None else list(parts)

    def list_parts(self) -> list[str]:
        return self.parts

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(self.store_factory(), self.retries, self.gate, self.monitor)


# Input item shape (keyed "live" upstream; the partition gets the values): Events([LiveEvent(stream,
# data, symbol, ts_ms), ...]) — one step activation's live events, in order (dataflows.outputs, dataflows.items).
EventItem = Events


class _EventPartition(StatefulSinkPartition[EventItem, None]):
    """Every event is stored in `live_events` (for Last-Event-ID resume) and published.

    With a publisher that holds unstored events (`holds_unstored`: the in-process `LocalBus`,
    the SSE clients are in this process) events are published at once and stored on the
    writer thread; the bus keeps them until stored, and a resume reads them from there.
    Otherwise (Kafka fan-out to API replicas, which can only resume from ClickHouse) each
    batch is stored first and then published, in order.
    """

    def __init__(
        self,
        bus: EventPublisher | None,
        store: Store | None,
        ids: IdClock,
        gate: LiveGate | None,
        monitor: WriteMonitor | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.ids = ids
        self.publish_first = store is not None and bus is not None and bus.holds_unstored
        self.gate = gate
        self.monitor = monitor
        self.writer = BackgroundWriter(self._write, name="live-events", monitor=monitor)

    def _write(self, batches: list[list[Event]]) -> None:
        events = [event for batch in batches for event in batch]
        try:
            if self.publish_first and self.gate is not None:
                self.gate.wait()  # already published: storing them is no more urgent than table rows
            if self.store is not None:
                write_with_retries(self.store, "live_events", [events_table(events)], monitor=self.monitor)
            if self.bus is None:
                pass
            elif self.publish_first:
                self.bus.mark_stored(events)
            else:
                self.bus.publish_many(events)
        finally:
            if self.gate is not None and not self.publish_first:
                self.gate.done(len(batches))

    def write_batch(self, values: list[EventItem]) -> None:
        items = [item for batch in values for item in batch.events]
        events = [
            Event(stream, event_id, data, symbol, int(ts))
            for event_id, (stream, data, symbol, ts) in zip(self.ids.take(len(items)), items, strict=True)
        ]
        if not events:
            return
        if self.publish_first and self.bus is not None:
            self.bus.publish_unstored(events)
        elif self.gate is not None:
            self.gate.submitted()
        self.writer.submit(events)
        if self.gate is not None:  # live: the flow was at work until now (tickcast/gc_tuning.py, idle collections)
            idle_collector.touch()

    def snapshot(self) -> None:
        self.writer.flush()
        return None

    def close(self) -> None:
        self.writer.close()


class EventSink(FixedPartitionedSink[EventItem, None]):
    """Stores each event in `live_events` (for Last-Event-ID resume) and publishes it."""

    def __init__(
        self,
        bus: EventPublisher | None,
        store_factory: Callable[[], Store] | None,
        ids: IdClock,
        gate: LiveGate | None = None,
        monitor: WriteMonitor | None = None,
        parts: list[str] | None = None,
    ) -> None:
        self.bus = bus
        self.store_factory = store_factory
        self.ids = ids
        self.gate = gate
        self.monitor = monitor
        self.parts = ["live"] if parts is None else list(parts)  # as StoreSink.parts

    def list_parts(self) -> list[str]:
        return self.parts

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _EventPartition:
        store = self.store_factory() if self.store_factory else None
        return _EventPartition(self.bus, store, self.ids, self.gate, self.monitor)
