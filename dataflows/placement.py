"""Where the store-bound parts of the flow run in a Bytewax cluster (`tickcast flow -i/-a`).

A chdb directory can be opened by one process only, so with a chdb store every step that
touches the store must live on process 0: the ClickHouse and live-event sinks (their
partitions are listed by process 0's workers only, and Bytewax builds a partition on a
worker that lists it) and the model stage, whose drift and accuracy rules start jobs
that read the store (its single key is chosen so that Bytewax routes it to worker 0).
With a ClickHouse server every process may write: the table writers are spread over
every worker (Bytewax balances the partitions that several workers list).

Partition names depend on the store kind only, never on the cluster size, so a cluster
can grow or shrink and still resume from its recovery store (a snapshot of a partition
no worker lists stops Bytewax at resume).
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

# The ClickHouse writers of a server store: a table's batches always go to one of them
# (Bytewax's part_fn: adler32 of the table name), so a table is inserted in order.
SERVER_STORE_PARTS: tuple[str, ...] = ("store", "store-1", "store-2", "store-3")
CHDB_STORE_PARTS: tuple[str, ...] = ("store",)
LIVE_PARTS: tuple[str, ...] = ("live",)


@dataclass(frozen=True)
class Placement:
    """This process's place in the cluster and what that lets it open.

    `shared_store`: the store is a ClickHouse server every process reaches; False for a chdb
    directory, which belongs to process 0. A single process owns everything either way.
    """

    process_id: int = 0
    processes: int = 1
    workers_per_process: int = 1
    shared_store: bool = False

    def __post_init__(self) -> None:
        if self.processes < 1 or self.workers_per_process < 1:
            raise ValueError(f"a cluster needs ≥ 1 process and worker, got {self.processes}×{self.workers_per_process}")
        if not 0 <= self.process_id < self.processes:
            raise ValueError(f"process id {self.process_id} is outside a cluster of {self.processes} processes")

    @property
    def owns_store(self) -> bool:
        """True when this process may open the store (migrations, sinks, jobs)."""
        return self.shared_store or self.process_id == 0

    @property
    def workers(self) -> int:
        return self.processes * self.workers_per_process

    def store_parts(self) -> list[str]:
        """The store sink's partitions this process's workers list."""
        if self.shared_store:
            return list(SERVER_STORE_PARTS)
        return list(CHDB_STORE_PARTS) if self.process_id == 0 else []

    def live_parts(self) -> list[str]:
        """The live-event sink's partition (it stores `live_events`), if this process may hold it."""
        return list(LIVE_PARTS) if self.owns_store else []

    def model_key(self) -> str:
        """The model stage's key: one that Bytewax routes to worker 0 (process 0)."""
        return key_routed_to(0, self.workers, base="model")

    def pin(self, key: str) -> str:
        """`key` made local: a key Bytewax routes to one of this process's workers.

        In a cluster, the decode step (keyed by source partition) and the symbol shards run
        on the process that reads the partition, so records never cross processes before
        the model stage and the sinks. A single process keeps its keys as they are.
        """
        if self.processes == 1:
            return key
        return _pinned(
            key,
            self.process_id * self.workers_per_process + zlib.crc32(key.encode()) % self.workers_per_process,
            self.workers,
        )


def key_routed_to(worker: int, workers: int, *, base: str) -> str:
    """The first of `base`, `base-1`, `base-2`, … that Bytewax 0.21 routes to `worker`.

    Bytewax's stateful operators send key k to worker `DefaultHasher(k) % workers`
    (Rust's SipHash-1-3 with zero keys over the string's bytes and a 0xff terminator;
    `src/operators.rs` `stateful_batch`, `src/timely.rs` `PartitionFn`). Checked against a
    real multi-worker run in tests/cluster/test_placement.py.
    """
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is outside {workers} workers")
    for n in range(100_000):
        key = base if n == 0 else f"{base}-{n}"
        if bytewax_worker_of(key, workers) == worker:
            return key
    raise RuntimeError(f"no key routed to worker {worker} of {workers}")  # pragma: no cover - 2^-100_000


@functools.cache
def _pinned(key: str, worker: int, workers: int) -> str:
    return key_routed_to(worker, workers, base=key)


def bytewax_worker_of(key: str, workers: int) -> int:
    """The worker Bytewax 0.21 routes the stateful key `key` to."""
    return sip13(key.encode() + b"\xff") % workers


_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def sip13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (one compression round, three finalization rounds), as Rust's `DefaultHasher`."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    tail = len(data) % 8
    for (m,) in struct.iter_unpack("<Q", data[: len(data) - tail]):
        v3 ^= m
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[len(data) - tail :], "little")
    v3 ^= last
    v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


class ProcessShare(FixedPartitionedSource[Any, Any]):
    """A source's partitions dealt out to the cluster's processes: the k-th of its sorted
    partitions is read by process k mod N (Kafka: process i reads partitions i, i+N, …).

    Bytewax builds a partition on a worker that lists it, so each process lists only its
    share; the per-partition and per-symbol steps then stay on that process (`Placement.pin`).
    """

    def __init__(self, source: FixedPartitionedSource[Any, Any], placement: Placement) -> None:
        self.source = source
        self.placement = placement

    def list_parts(self) -> list[str]:
        parts = sorted(self.source.list_parts(), key=_natural)
        n, me = self.placement.processes, self.placement.process_id
        return [part for k, part in enumerate(parts) if k % n == me]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition[Any, Any]:
        return self.source.build_part(step_id, for_part, resume_state)


def _natural(part: str) -> tuple[str, int]:
    """p2 before p10, so that process k reads partitions k, k+N, … of the topics."""
    head = part.rstrip("0123456789")
    tail = part[len(head) :]
    return (head, int(tail) if tail else -1)
