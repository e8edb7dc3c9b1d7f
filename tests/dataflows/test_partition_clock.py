"""PartitionClock: a replay's Kafka partitions release within max_skew_ms of the slowest one."""

from __future__ import annotations

from dataflows.kafka.pair_source import PartitionClock


def test_partitions_wait_for_the_slowest_within_the_skew() -> None:
    clock = PartitionClock(2, 600)
    clock.register("p0")
    assert clock.cap("p0", 1_000.0) is None  # p1 not built in this process: off
    clock.register("p1")
    assert clock.cap("p0", 1_000.0) == -1  # p1 has not shown its first message: wait
    assert clock.cap("p1", 5_000.0) == 1_600  # p0 is the slowest: p1 may release up to 1000 + 600
    assert clock.cap("p0", 1_000.0) == 1_600  # the slowest may always release its own head
    assert clock.cap("p0", float("inf")) == 5_600  # p0 drained and done
    assert clock.cap("p1", float("inf")) is None  # everything done: no cap
