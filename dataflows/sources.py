"""Input sources for the signals flow.

Every source emits items of shape `(partition_key, RawBatch)`: one item is a whole
batch from one partition, so the per-item cost of Bytewax (~1 µs) is paid per batch.
A RawBatch is a sequence of `RawRecord = (source_name, payload, ingest_hint_ms | None)`:
the payload is bytes/str JSON or an already-parsed dict; `ingest_hint_ms` is the
`ingest_ts` to use when the payload has none (None = its event time, as for files).
The Kafka source sends a `RawBlock`, the same sequence kept as columns, so a backfill
does not build a tuple per message only for the decoder to take it apart again.

Within one partition, records come in `ingest_ts` order; the per-symbol join relies
on it (see docs/decisions.md, "ordered partitions").
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from dataflows.arrow_rows import ArrowBlock, ArrowRows
from dataflows.file_lines import Survey, count_records, joined_records, merged_chunks, survey
from dataflows.line_block import Lines
from dataflows.raw_records import RawRecord, RecordBlock
from tickcast.gc_tuning import idle_collector
from tickcast.records import INPUT_SUFFIXES

log = logging.getLogger(__name__)


class RawBlock(RecordBlock):
    """RawRecords as columns: `values` the payloads, `hints` int64 ingest hints (-1 = none),
    and the source name of record k, `names[name_idx[k]]` (`name_idx` None: all `names[0]`).
    `keys`: the Kafka message keys (bytes or None each), or None when the source has none;
    they are not part of the RawRecord tuples (`key(k)` reads one).

    It reads like a list of RawRecords (index, iterate, compare with a list), so code that
    takes records one at a time needs no second path.
    """

    __slots__ = ("hints", "keys", "name_idx", "names", "values")

    def __init__(
        self,
        names: Sequence[str],
        values: Sequence[Any],
        hints: np.ndarray,
        name_idx: np.ndarray | None = None,
        keys: list[bytes | None] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.values = values
        self.hints = hints
        self.name_idx = name_idx
        self.keys = keys

    @classmethod
    def concat(cls, blocks: Sequence[RawBlock]) -> RawBlock:
        """The blocks' records, in order, as one block (keys kept where a block has them)."""
        names, name_idx = cls.merged_names(blocks)
        keys = None
        if any(b.keys is not None for b in blocks):
            keys = [k for b in blocks for k in (b.keys if b.keys is not None else [None] * len(b))]
        values: Sequence[Any] = (
            Lines.concat([b.values for b in blocks])  # type: ignore[misc]
            if all(isinstance(b.values, Lines) for b in blocks)
            else [v for b in blocks for v in b.values]
        )
        return cls(names, values, np.concatenate([b.hints for b in blocks]), name_idx, keys)

    def __len__(self) -> int:
        return len(self.values)

    def key(self, k: int) -> bytes | None:
        return None if self.keys is None else self.keys[k]

    def _record(self, k: int) -> RawRecord:
        hint = int(self.hints[k])
        return (self.name(k), self.values[k], None if hint < 0 else hint)

    def columns(self, at: Sequence[int]) -> tuple[list[str], list[Any], list[int | None]]:
        """(source names, payloads, hints) of records `at`: `zip(*(self[k] for k in at))`,
        read column by column (a replay's candles are a fifth of its lines)."""
        pos = np.asarray(at, np.int64)
        values = self.values
        if isinstance(values, Lines):
            blob = values.blob
            payloads = [blob[a:b] for a, b in zip(values.starts[pos].tolist(), values.ends[pos].tolist(), strict=True)]
        else:
            payloads = [values[k] for k in pos.tolist()]
        hints = [None if h < 0 else h for h in self.hints[pos].tolist()]
        if self.name_idx is None:
            names = [self.names[0]] * pos.size
        else:
            names = [self.names[j] for j in self.name_idx[pos].tolist()]
        return names, payloads, hints

    def __iter__(self) -> Iterator[RawRecord]:
        return (self[k] for k in range(len(self)))

    def __repr__(self) -> str:
        return f"RawBlock({list(self)!r})"


RawBatch = Sequence[RawRecord]  # a list of RawRecords or a RawBlock


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, plus the JSONL/Parquet files inside named folders (sorted)."""
    out: list[Path] = []
    for raw in paths:
        # absolute: the files are read on other threads, and chdb's start-up changes the
        # process's working directory for a moment (to its package folder)
        path = Path(raw).absolute()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in INPUT_SUFFIXES and p.is_file())
            if not found:
                raise FileNotFoundError(f"{path} holds no .jsonl or .parquet file")
            out.extend(found)
        elif path.is_file():
            if path.suffix not in INPUT_SUFFIXES:
                raise ValueError(f"{path}: expected a .jsonl or .parquet file")
            out.append(path)
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    return out


def merged_file_records(paths: list[Path]) -> Iterator[RawRecord]:
    """All records of all files, merged by ingest time (ties: file order), one by one."""
    names = [f"file:{p.name}" for p in paths]
    for _keys, records, files in merged_chunks(paths):
        for record, f in zip(records, files.tolist(), strict=True):
            yield (names[f], record, None)


class _FilePartition(StatefulSourcePartition[tuple[str, RawBatch], int]):
    """Emits the merged files as RawBlocks of `batch_size` records (JSONL lines as `Lines`,
    Parquet rows as dicts), or as ArrowBlocks (Parquet files of one schema, whose columns the
    decode step reads as they are: dataflows/arrow_rows.py), read chunk by chunk (dataflows/file_lines.py);
    the snapshot is the count emitted, so a resume re-reads the files and skips that many."""

    def __init__(
        self,
        key: str,
        paths: list[Path],
        batch_size: int,
        resume: int | None,
        on_emit: Callable[[int], None] | None = None,
        surveys: Sequence[Future[Survey] | None] | None = None,
    ) -> None:
        self._key = key
        self._names = tuple(f"file:{p.name}" for p in paths)
        self._chunks = merged_chunks(paths, surveys)
        self._batch_size = max(1, batch_size)
        self._emitted = resume or 0
        self._on_emit = on_emit
        # Chunks read and not yet emitted, as read: a batch joins just its own records, so that
        # a JSONL batch's lines are copied once, into a block holding exactly them (which the
        # decoder reads as it is), not joined with the rest and cut again.
        self._parts: list[Sequence[Any]] = []
        self._part_files: list[np.ndarray] = []
        self._held = 0
        skip = self._emitted
        while skip:
            if not self._fill(skip):
                break
            skip -= len(self._take(min(skip, self._held))[0])

    def _fill(self, want: int) -> bool:
        """Read chunks until `want` records are held (or the files end); False if none are."""
        while self._held < want:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            if len(nxt[1]):
                self._parts.append(nxt[1])
                self._part_files.append(nxt[2])
                self._held += len(nxt[1])
        return self._held > 0

    def _take(self, n: int) -> tuple[Sequence[Any], np.ndarray]:
        """The first `n` records held (and their file indexes) as one sequence."""
        parts, files = [], []
        while n:
            part, part_files = self._parts[0], self._part_files[0]
            if len(part) <= n:
                parts.append(part)
                files.append(part_files)
                self._parts.pop(0)
                self._part_files.pop(0)
                n -= len(part)
            else:
                parts.append(part[:n])
                files.append(part_files[:n])
                self._parts[0], self._part_files[0] = part[n:], part_files[n:]
                n = 0
        taken = joined_records(parts)
        self._held -= len(taken)
        return taken, files[0] if len(files) == 1 else np.concatenate(files)

    def next_batch(self) -> list[tuple[str, RawBatch]]:
        if not self._fill(self._batch_size):
            raise StopIteration
        values, files = self._take(min(self._batch_size, self._held))
        n = len(values)
        self._emitted += n
        if self._on_emit:
            self._on_emit(self._emitted)
        if isinstance(values, ArrowRows):  # Parquet rows (files of one schema), read column-wise by the decode step
            return [(self._key, ArrowBlock(self._names, values, None if len(self._names) == 1 else files))]
        # JSONL `Lines`, or Parquet rows as dicts
        block = RawBlock(self._names, values, np.full(n, -1, np.int64), None if len(self._names) == 1 else files)
        return [(self._key, block)]

    def snapshot(self) -> int:
        return self._emitted


class _IteratorPartition(StatefulSourcePartition[tuple[str, RawBatch], int]):
    """Emits batches from a deterministic iterator; the snapshot is the count emitted,
    so a resume re-creates the iterator and skips that many."""

    def __init__(
        self,
        key: str,
        records: Iterator[RawRecord],
        batch_size: int,
        resume: int | None,
        on_emit: Callable[[int], None] | None = None,
    ) -> None:
        self._key = key
        self._records = records
        self._batch_size = batch_size
        self._emitted = resume or 0
        self._on_emit = on_emit
        if self._emitted:
            for _ in itertools.islice(self._records, self._emitted):
                pass

    def next_batch(self) -> list[tuple[str, RawBatch]]:
        batch = list(itertools.islice(self._records, self._batch_size))
        if not batch:
            raise StopIteration
        self._emitted += len(batch)
        if self._on_emit:
            self._on_emit(self._emitted)
        return [(self._key, batch)]

    def snapshot(self) -> int:
        return self._emitted


class FileReplaySource(FixedPartitionedSource[tuple[str, RawBatch], int]):
    """Replays JSONL/Parquet files (or folders of them) once, merged by ingest time."""

    def __init__(
        self, paths: Iterable[str | Path], *, batch_size: int = 5_000, on_emit: Callable[[int], None] | None = None
    ) -> None:
        self.paths = expand_inputs(paths)
        self.batch_size = batch_size
        self.on_emit = on_emit
        # the JSONL files' first pass (order, count) starts now, beside the flow's set-up
        self._surveys = [None if p.suffix == ".parquet" else survey(p) for p in self.paths]

    def count_records(self) -> int:
        """Records in all the files (the progress bar's total), from the first pass."""
        return sum(count_records(p, s) for p, s in zip(self.paths, self._surveys, strict=True))

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(for_part, self.paths, self.batch_size, resume_state, self.on_emit, self._surveys)


class RecordsSource(FixedPartitionedSource[tuple[str, RawBatch], int]):
    """A finite list of records (dicts or JSON), already in ingest order; for tests and backfills
    from stored rows."""

    def __init__(
        self,
        records: list[Any],
        *,
        source: str = "records",
        batch_size: int = 5_000,
        on_emit: Callable[[int], None] | None = None,
    ) -> None:
        self.records = records
        self.source = source
        self.batch_size = batch_size
        self.on_emit = on_emit

    def list_parts(self) -> list[str]:
        return [self.source]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _IteratorPartition:
        it = ((self.source, r, None) for r in self.records)
        return _IteratorPartition(for_part, it, self.batch_size, resume_state, self.on_emit)


class _LivePartition(StatefulSourcePartition[tuple[str, RawBatch], int]):
    """Paced simulator: releases records whose (scaled) time has come."""

    def __init__(
        self,
        key: str,
        records: Iterator[dict[str, Any]],
        resume: int | None,
        max_batch: int,
        stop: threading.Event | None = None,
        backfill_done: threading.Event | None = None,
    ) -> None:
        self._stop = stop
        self._backfill_done = backfill_done
        self._key = key
        self._records = records
        self._emitted = resume or 0
        self._max_batch = max_batch
        self._next: dict[str, Any] | None = None
        self._wait_until = 0.0
        for _ in itertools.islice(self._records, self._emitted):
            pass

    def next_batch(self) -> list[tuple[str, RawBatch]]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        batch: list[RawRecord] = []
        while len(batch) < self._max_batch:
            if self._next is None:
                try:
                    self._next = next(self._records)
                except StopIteration:
                    if batch:
                        break
                    raise
            due = self._next.pop("_due_wall", 0.0)
            if due > time.time():
                self._next["_due_wall"] = due
                self._wait_until = due
                if self._backfill_done is not None:
                    self._backfill_done.set()
                break
            batch.append(("sim", self._next, None))
            self._next = None
        idle_collector.polled(bool(batch))  # as the in-process queue does (`_QueuePartition`)
        self._emitted += len(batch)
        return [(self._key, batch)] if batch else []

    def next_awake(self) -> datetime | None:
        if self._wait_until > time.time():
            return datetime.fromtimestamp(min(self._wait_until, time.time() + 0.2), tz=UTC)
        return None

    def snapshot(self) -> int:
        return self._emitted


class SimulatorSource(FixedPartitionedSource[tuple[str, RawBatch], int]):
    """The built-in simulator for `tickcast up`: an instant backfill of recent history, then live.

    `records_factory()` must return the same deterministic iterator of dicts every time
    (each dict may carry `_due_wall`, the wall-clock second it is due); a resume
    skips what was already emitted.
    """

    def __init__(
        self,
        records_factory: Any,
        *,
        max_batch: int = 5_000,
        stop: threading.Event | None = None,
        backfill_done: threading.Event | None = None,
    ) -> None:
        self.records_factory = records_factory
        self.max_batch = max_batch
        self.stop = stop
        self.backfill_done = backfill_done  # set when the instant backfill is out (FlowHooks.backfill_done)

    def list_parts(self) -> list[str]:
        return ["sim"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _LivePartition:
        return _LivePartition(
            for_part, iter(self.records_factory()), resume_state, self.max_batch, self.stop, self.backfill_done
        )


# How often an empty in-process queue is looked at: a record waits half of it on average before
# the flow sees it, and every live latency (candle close -> prediction, POST -> SSE) includes
# that wait. Polling every 1 ms instead of 5 costs an idle flow 0.5–1.7 % of a core more, over
# three measurements (bench/queue_poll.py, docs/decisions.md), for ~2 ms of median latency.
_QUEUE_POLL = timedelta(milliseconds=1)


class _QueuePartition(StatefulSourcePartition[tuple[str, RawBatch], None]):
    def __init__(self, q: Any, key: str, max_batch: int) -> None:
        self._q = q
        self._key = key
        self._max_batch = max_batch
        self._stopped = False

    def next_batch(self) -> list[tuple[str, RawBatch]]:
        if self._stopped:
            raise StopIteration
        batch: list[RawRecord] = []
        while len(batch) < self._max_batch:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is STOP:
                # The records taken before STOP in this poll go out first: the stop comes after them.
                self._stopped = True
                if not batch:
                    raise StopIteration
                break
            if isinstance(item, list):  # one request's records, handed over together
                batch.extend(item)
            else:
                batch.append(item)
        idle_collector.polled(bool(batch))  # nothing came and nothing ran: collect now, not inside a burst
        return [(self._key, batch)] if batch else []

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + _QUEUE_POLL if self._q.empty() else None

    def snapshot(self) -> None:
        return None


STOP: Any = object()


class QueueSource(FixedPartitionedSource[tuple[str, RawBatch], None]):
    """Records handed over in-process (HTTP ingest, admin control records) in embedded mode.

    Queue items are `RawRecord`s or lists of them (one request's records: they reach the
    flow in the same batch, and a 1,000-record request is one queue operation). `q` is a
    `queue.Queue` or anything with its `get_nowait`/`empty` (`tickcast.inbox.IngestInbox`,
    the bounded embedded ingest buffer).

    Not resumable: an accepted HTTP record lives in memory until its rows are written — the
    poll (1 ms), the write batching (TICKCAST_WRITE_FLUSH_MS) and the insert; with
    TICKCAST_INGEST_ACK=stored the API answers only after that (docs/reliability.md).
    """

    def __init__(self, q: Any, *, key: str = "http", max_batch: int = 5_000) -> None:
        self.q = q
        self.key = key
        self.max_batch = max_batch

    def list_parts(self) -> list[str]:
        return [self.key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _QueuePartition:
        return _QueuePartition(self.q, for_part, self.max_batch)
