"""Partition progress for replays: how the model stage knows that an event-time boundary is complete.

The model stage folds labels and served features into calibration windows, accuracy and
feature drift at boundaries of event time. In a replay with several source partitions
(Kafka), the partitions run ahead of each other by whole batches, so "the newest label
seen" says nothing about the labels still to come from a slower partition. Each
partition therefore reports its progress through the flow, behind its own records:

    source partition ──(key, RawBatch), (key, PartitionMark)──> decode
    decode ──("shard", shard, Progress) to every shard──> symbol_shards
    symbol_shards ──("progress", partition, shard, newest) model item──> model_stage

A `Progress` travels the same path as the records before it, so when the model stage has
it from every shard, every model input made from that partition's records with
`ingest_ts < newest` has arrived. The stage's low watermark is the smallest such
`newest` over all partitions (`END` once a partition is exhausted).

`MarkedSource` wraps a bounded source for that (replays only; a live partition that
is idle would hold everything back, so live flows use the newest ingest time seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

END = 2**63 - 1  # the `newest` of an exhausted partition


@dataclass(frozen=True, slots=True)
class PartitionMark:
    """Emitted by a `MarkedSource` partition after a batch once `MARK_EVERY` records have gone
    by since the last one, and once at its end. (How often only changes how soon the model
    stage learns of the progress, never what it computes.)"""

    partition: str
    end: bool = False


@dataclass(frozen=True, slots=True)
class Progress:
    """decode → one shard: the partition's records with ingest_ts < newest have all been sent."""

    partition: str
    shard: str
    newest: int


MARK_EVERY = 1_000  # records between two marks (a mark per record would double a per-record replay's items)


class _MarkedPartition(StatefulSourcePartition[tuple[str, Any], Any]):
    def __init__(self, key: str, inner: StatefulSourcePartition[Any, Any]) -> None:
        self._key = key
        self._inner = inner
        self._ended = False
        self._unmarked = 0  # records since the last mark

    def next_batch(self) -> list[tuple[str, Any]]:
        if self._ended:
            raise StopIteration
        try:
            items = list(self._inner.next_batch())
        except StopIteration:
            self._ended = True
            return [(self._key, PartitionMark(self._key, end=True))]
        self._unmarked += sum(len(batch) for _, batch in items)
        if self._unmarked >= MARK_EVERY:
            self._unmarked = 0
            items.append((self._key, PartitionMark(self._key)))
        return items

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class MarkedSource(FixedPartitionedSource[tuple[str, Any], Any]):
    """A bounded source whose partitions also emit a `PartitionMark` after each batch and at their end."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any]) -> None:
        self.inner = inner

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _MarkedPartition:
        return _MarkedPartition(for_part, self.inner.build_part(step_id, for_part, resume_state))
