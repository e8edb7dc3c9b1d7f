"""A small recovered flow for tests/dataflows/test_recovery_leftovers.py, run as a process of its
own (the test SIGKILLs it): the shape of the signals flow's crash-recovery path in miniature.

    source (one partition, items 0..N-1, snapshot = next item)
      -> `seen` (stateful_batch, one key: the items it has seen; emits each new item once,
         as the symbol shards refuse a tick id they have seen)
      -> sink (a FixedPartitionedSink whose snapshot() writes what it was handed, as the
         store sink's snapshot() waits for its inserts)

    python -m tests.dataflows.leftover_flow PHASE RECOVERY_DIR OUT_FILE

PHASE `stall`: the sink's snapshot at the end of the epoch holding item MARK never returns
(it touches OUT_FILE.stalled first): the run is killed there, as a replay killed while its
store sink waits for ClickHouse. PHASE `idle`: the source emits nothing (a resumed replay's
first epochs, while its consumers connect). PHASE `run`: to the end.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.testing import run_main

N = 120
MARK = 40
EPOCH = timedelta(milliseconds=200)


class _Part(StatefulSourcePartition[int, int]):
    def __init__(self, phase: str, resume: int | None) -> None:
        self.phase = phase
        self.next = resume or 0

    def next_batch(self) -> list[int]:
        time.sleep(0.02)  # ~10 items per epoch
        if self.phase == "idle":
            return []
        if self.next >= N:
            raise StopIteration
        self.next += 1
        return [self.next - 1]

    def snapshot(self) -> int:
        return self.next


class Numbers(FixedPartitionedSource[int, int]):
    def __init__(self, phase: str) -> None:
        self.phase = phase

    def list_parts(self) -> list[str]:
        return ["p"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Part:
        return _Part(self.phase, resume_state)


class Seen(StatefulBatchLogic[int, int, list[int]]):
    def __init__(self, state: list[int] | None) -> None:
        self.seen = set(state or [])

    def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
        new = [v for v in values if v not in self.seen]
        self.seen.update(new)
        return new, StatefulBatchLogic.RETAIN

    def snapshot(self) -> list[int]:
        return sorted(self.seen)


class _Out(StatefulSinkPartition[int, None]):
    def __init__(self, phase: str, out: Path) -> None:
        self.phase = phase
        self.out = out
        self.handed: list[int] = []

    def write_batch(self, values: list[int]) -> None:
        self.handed.extend(values)

    def snapshot(self) -> None:
        if self.phase == "stall" and MARK in self.handed:
            Path(f"{self.out}.stalled").touch()
            time.sleep(600)  # killed here
        with self.out.open("a") as fh:
            fh.writelines(f"{v}\n" for v in self.handed)
        self.handed = []


class Out(FixedPartitionedSink[int, None]):
    def __init__(self, phase: str, out: Path) -> None:
        self.phase = phase
        self.out = out

    def list_parts(self) -> list[str]:
        return ["out"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Out:
        return _Out(self.phase, self.out)


def build(phase: str, out: Path) -> Dataflow:
    flow = Dataflow("leftover")
    keyed = op.key_on("key", op.input("in", flow, Numbers(phase)), lambda _: "a")
    seen = op.stateful_batch("seen", keyed, Seen)
    op.output("out", seen, Out(phase, out))
    return flow


def main(phase: str, recovery: str, out: str) -> None:
    from dataflows.signals import prepare_recovery

    run_main(build(phase, Path(out)), epoch_interval=EPOCH, recovery_config=prepare_recovery(recovery))


def _args(argv: list[str]) -> tuple[str, str, str]:
    phase, recovery, out = argv
    assert phase in ("stall", "idle", "run"), phase
    return phase, recovery, out


if __name__ == "__main__":
    main(*_args(sys.argv[1:]))
