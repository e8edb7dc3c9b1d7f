"""The paired Kafka source's start-up costs: partition counts read once per start-up (not
once per caller) and a replay's short nap while its first fetch is on the way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import dataflows.kafka.pair_source as pair_source
from dataflows.kafka.pair_source import KafkaPairSource, _PairPartition


class _Counts:
    """A stand-in for `topic_partition_counts` that counts its calls."""

    def __init__(self, *answers: dict[str, int]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, brokers: str, topics: tuple[str, str], **_: object) -> dict[str, int]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return {t: answer.get(t, 0) for t in topics}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(pair_source.time, "monotonic", lambda: now[0])
    return now


def test_start_up_reads_the_partition_counts_once(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> None:
    counts = _Counts({"ticks": 2, "candles": 2})
    monkeypatch.setattr(pair_source, "topic_partition_counts", counts)
    src = KafkaPairSource("b:9092", "ticks", "candles", tail=False)
    assert src.list_parts() == ["p0", "p1"]  # build_flow
    assert src.list_parts() == ["p0", "p1"]  # Bytewax
    assert src._counts() == [2, 2]  # build_part
    assert counts.calls == 1


def test_partition_counts_are_read_again_after_the_ttl(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> None:
    counts = _Counts({"ticks": 1, "candles": 1}, {"ticks": 3, "candles": 3})
    monkeypatch.setattr(pair_source, "topic_partition_counts", counts)
    src = KafkaPairSource("b:9092", "ticks", "candles", tail=False)
    assert src.list_parts() == ["p0"]
    clock[0] += pair_source._COUNTS_TTL_S - 0.01
    assert src.list_parts() == ["p0"]
    clock[0] += 0.02
    assert src.list_parts() == ["p0", "p1", "p2"]  # a later run sees the new partitions
    assert counts.calls == 2


def test_a_failed_count_is_not_kept(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> None:
    counts = _Counts({}, {"ticks": 1})
    monkeypatch.setattr(pair_source, "topic_partition_counts", counts)
    src = KafkaPairSource("b:9092", "ticks", "candles", tail=False)
    with pytest.raises(RuntimeError, match="neither Kafka topic"):
        src.list_parts()
    assert src.list_parts() == ["p0"]  # the topics exist now: asked again at once
    assert counts.calls == 2


def test_the_cached_counts_cannot_be_changed_by_a_caller(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> None:
    monkeypatch.setattr(pair_source, "topic_partition_counts", _Counts({"ticks": 2, "candles": 1}))
    src = KafkaPairSource("b:9092", "ticks", "candles", tail=False)
    src._counts().append(9)
    src._counts()[0] = 0
    assert src._counts() == [2, 1]


def _partition(*, tail: bool, delivered: bool, idle: bool) -> _PairPartition:
    """A partition's wake-up state alone (no consumer: next_awake reads nothing else)."""
    part = object.__new__(_PairPartition)
    part._tail, part._delivered, part._idle = tail, delivered, idle
    return part


@pytest.mark.parametrize(
    ("tail", "delivered", "wake"),
    [
        (False, False, pair_source._FIRST_WAKE),  # a replay waiting for its first fetch
        (False, True, pair_source._IDLE_WAKE),
        (True, False, pair_source._IDLE_WAKE),  # a tailing source may wait long for its first message
        (True, True, pair_source._IDLE_WAKE),
    ],
)
def test_idle_wake(tail: bool, delivered: bool, wake: timedelta) -> None:
    before = datetime.now(UTC)
    at = _partition(tail=tail, delivered=delivered, idle=True).next_awake()
    assert at is not None
    assert before + wake <= at <= datetime.now(UTC) + wake
    assert _partition(tail=tail, delivered=delivered, idle=False).next_awake() is None


def test_the_first_wake_is_shorter_than_the_idle_one() -> None:
    assert pair_source._FIRST_WAKE < pair_source._IDLE_WAKE
