"""The pure parts of the paired Kafka source: the vectorized merger, the re-fetch guard and
the per-message timestamp rule, against hand-worked cases and per-message references."""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.kafka.pair_source import _fresh, _PairMerger, _stamped_values
from dataflows.sources import RawBlock


def rec(i: int, offset: int, ts: int | None) -> tuple[str, bytes, int | None]:
    return (f"kafka:tp{i}", f"{i}/{offset}".encode(), ts)


def merger(n: int) -> _PairMerger:
    return _PairMerger([f"kafka:tp{i}" for i in range(n)])


def add(merger: _PairMerger, i: int, stamps: list[int | None], first_offset: int = 0) -> None:
    """Add messages at consecutive offsets; None = no timestamp (passed as -1)."""
    offsets = list(range(first_offset, first_offset + len(stamps)))
    ts = np.array([-1 if t is None else t for t in stamps], dtype=np.int64)
    merger.add(i, ts, [rec(i, o, t)[1] for o, t in zip(offsets, stamps)], np.array(offsets, dtype=np.int64))


def names(batch: list[Any]) -> list[bytes]:
    return [value for _, value, _ in batch]


# ------------------------------------------------------------------------- hand-worked cases


def test_an_earlier_stamp_cannot_jump_its_predecessor() -> None:
    m = merger(2)
    add(m, 0, [10, 30, 20, 40])  # effective: 10 30 30 40
    add(m, 1, [15, 25, 35])
    # frontier = min(40, 35) = 35: the tick stamped 20 follows the one stamped 30
    assert names(m.release([False, False])) == [b"0/0", b"1/0", b"1/1", b"0/1", b"0/2", b"1/2"]
    assert m.pending() == 1 and m.pending(0) == 1 and m.head_offset(0) == 3 and m.head_offset(1) is None
    assert m.max_seen == [40, 35]
    assert m.release([False, True]) == [rec(0, 3, 40)]  # candles exempt: the tick at 40 goes
    assert m.pending() == 0 and m.head_offset(0) is None


def test_records_keep_their_own_timestamp_not_the_effective_one() -> None:
    m = merger(1)
    add(m, 0, [30, 20, None])
    assert m.release([False]) == [rec(0, 0, 30), rec(0, 1, 20), rec(0, 2, None)]


def test_ticks_go_first_on_equal_timestamps() -> None:
    m = merger(2)
    add(m, 1, [5, 5])
    add(m, 0, [5])
    assert names(m.release([False, False])) == [b"0/0", b"1/0", b"1/1"]


def test_messages_without_timestamp_sort_first_until_one_has_one() -> None:
    m = merger(2)
    add(m, 0, [None, 7, None])  # effective: -1 7 7
    add(m, 1, [3])
    assert m.max_seen == [7, 3]
    assert names(m.release([False, False])) == [b"0/0", b"1/0"]  # frontier 3
    assert m.head_offset(0) == 1 and m.pending(0) == 2


def test_a_silent_tp_holds_everything_back_unless_exempt() -> None:
    m = merger(2)
    add(m, 0, [1, 2, 3])
    assert m.release([False, False]) == []
    assert m.max_seen == [3, None] and m.pending() == 3
    assert names(m.release([False, True])) == [b"0/0", b"0/1", b"0/2"]


def test_a_tp_with_only_untimed_messages_releases_only_untimed_ones() -> None:
    m = merger(2)
    add(m, 0, [4, 9])
    add(m, 1, [None, None])  # has delivered (max_seen -1), so it no longer blocks everything
    assert m.max_seen == [9, -1]
    assert names(m.release([False, False])) == [b"1/0", b"1/1"]  # frontier -1
    assert m.pending(0) == 2


def test_all_exempt_releases_everything_merged() -> None:
    m = merger(2)
    add(m, 0, [2, 8])
    add(m, 1, [1, 9, 3])  # effective 1 9 9
    assert names(m.release([True, True])) == [b"1/0", b"0/0", b"0/1", b"1/1", b"1/2"]


def test_buffers_grow_across_adds_and_release_as_prefixes() -> None:
    m = merger(2)
    add(m, 0, [1, 5])
    add(m, 0, [3, 6], first_offset=2)  # effective 5 6: the running max carries over adds
    add(m, 1, [5])
    assert names(m.release([False, False])) == [b"0/0", b"0/1", b"0/2", b"1/0"]
    assert m.head_offset(0) == 3


# ------------------------------------------------------------------------- property test


class ReferenceMerger:
    """One message at a time: effective ts = max valid stamp so far (-1 before any), a
    release pops each TP's front while ≤ the frontier, then a heap merge."""

    def __init__(self, n: int) -> None:
        self.buffers: list[list[tuple[int, int, Any]]] = [[] for _ in range(n)]  # (eff, offset, record)
        self.max_seen: list[int | None] = [None] * n

    def add(self, i: int, ts: int | None, offset: int, record: Any) -> None:
        best = self.max_seen[i]
        if ts is not None and ts >= 0 and (best is None or ts > best):
            best = ts
        best = -1 if best is None else best
        self.max_seen[i] = best
        self.buffers[i].append((best, offset, record))

    def release(self, exempt: list[bool]) -> list[Any]:
        watched = [seen for seen, ex in zip(self.max_seen, exempt) if not ex]
        if any(seen is None for seen in watched):
            return []
        limit = min(watched) if watched else math.inf
        streams = []
        for i, buf in enumerate(self.buffers):
            out = []
            while buf and buf[0][0] <= limit:
                eff, offset, record = buf.pop(0)
                out.append((eff, i, offset, record))
            streams.append(out)
        return [record for *_, record in heapq.merge(*streams)]


stamp = st.one_of(st.none(), st.integers(-3, -1), st.integers(0, 25))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[tuple[list[tuple[int, list[tuple[int | None, int]]]], list[bool]]]]:
    """n TPs and rounds of (adds, exempt flags); an add = (TP, [(stamp, offset gap)])."""
    n = draw(st.integers(1, 3))
    chunk = st.tuples(st.integers(0, n - 1), st.lists(st.tuples(stamp, st.integers(1, 3)), max_size=6))
    rounds = draw(
        st.lists(
            st.tuples(st.lists(chunk, max_size=5), st.lists(st.booleans(), min_size=n, max_size=n)),
            min_size=1,
            max_size=8,
        )
    )
    return n, rounds


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_vectorized_merger_matches_per_message_reference(scenario: Any) -> None:
    n, rounds = scenario
    tested, ref = merger(n), ReferenceMerger(n)
    next_offset = [0] * n
    for adds, exempt in rounds:
        for i, msgs in adds:
            offsets, stamps = [], []
            for ts, gap in msgs:
                next_offset[i] += gap
                offsets.append(next_offset[i])
                stamps.append(ts)
            records = [rec(i, o, t if t is not None and t >= 0 else None) for o, t in zip(offsets, stamps)]
            for o, t, r in zip(offsets, stamps, records):
                ref.add(i, t, o, r)
            ts_arr = np.array([-1 if t is None else t for t in stamps], dtype=np.int64)
            tested.add(i, ts_arr, [value for _, value, _ in records], np.array(offsets, dtype=np.int64))
        assert tested.max_seen == ref.max_seen
        released = tested.release(exempt)
        assert isinstance(released, RawBlock) and list(released) == ref.release(exempt)
        assert tested.pending() == sum(map(len, ref.buffers))
        for i in range(n):
            assert tested.pending(i) == len(ref.buffers[i])
            assert tested.head_offset(i) == (ref.buffers[i][0][1] if ref.buffers[i] else None)
    assert list(tested.release([True] * n)) == ref.release([True] * n)
    assert tested.pending() == 0


# ------------------------------------------------------------------------- re-fetch guard


def reference_fresh(offsets: list[int], next_offset: int | None) -> list[bool]:
    """The per-message guard: skip an offset below the next expected one, else advance."""
    keep = []
    for offset in offsets:
        ok = next_offset is None or offset >= next_offset
        keep.append(ok)
        if ok:
            next_offset = offset + 1
    return keep


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.one_of(st.none(), st.integers(0, 40)))
def test_refetch_guard_matches_per_message_rule(offsets: list[int], next_offset: int | None) -> None:
    got = _fresh(np.array(offsets, dtype=np.int64), next_offset)
    assert got.tolist() == reference_fresh(offsets, next_offset)


def test_refetch_guard_drops_a_redelivered_prefix() -> None:
    # after a resume, 5..7 come again though 8 is the next expected offset
    assert _fresh(np.array([5, 6, 7, 8, 9]), 8).tolist() == [False, False, False, True, True]
    assert _fresh(np.array([3, 4]), None).tolist() == [True, True]


# ------------------------------------------------------------------------- timestamps of messages


def test_stamped_values_keep_only_usable_timestamps() -> None:
    # (type, ms): 0 = not available, 1 = create time, 2 = log-append time
    stamps = [(1, 1_700_000_000_000), (0, 123), (2, 42), (1, -5), (1, 0)]
    msgs = [
        Message(topic="t", partition=0, offset=k, value=f"v{k}".encode(), timestamp=s, key=b"S" if k % 2 else None)
        for k, s in enumerate(stamps)
    ]
    ts, values, keys = _stamped_values(msgs)
    assert ts.dtype == np.int64
    assert ts.tolist() == [1_700_000_000_000, -1, 42, -1, 0]
    assert values == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert keys == [None, b"S", None, b"S", None]
    block = RawBlock(["kafka:t"], values, ts)  # what the source hands the flow
    assert list(block) == [
        ("kafka:t", b"v0", 1_700_000_000_000),
        ("kafka:t", b"v1", None),
        ("kafka:t", b"v2", 42),
        ("kafka:t", b"v3", None),
        ("kafka:t", b"v4", 0),
    ]


def test_a_raw_block_reads_like_its_list_of_records() -> None:
    names = ["kafka:a", "kafka:b"]
    block = RawBlock(names, [b"x", b"y", b"z"], np.array([5, -1, 7]), np.array([1, 0, 1]))
    expected = [("kafka:b", b"x", 5), ("kafka:a", b"y", None), ("kafka:b", b"z", 7)]
    assert len(block) == 3 and block[1] == expected[1] and block[-1] == expected[-1]
    assert list(block) == expected and block == expected and block[1:] == expected[1:]
    assert block != expected[:2] and not RawBlock(names, [], np.empty(0, np.int64))


def test_keys_travel_with_their_messages_through_the_merge() -> None:
    m = merger(2)
    m.add(0, np.array([10, 30, 50]), [b"t10", b"t30", b"t50"], np.arange(3), [b"A", b"B", None])
    m.add(1, np.array([20, 40]), [b"c20", b"c40"], np.arange(2))  # no keys given: all None
    block = m.release([False, False])  # up to 40: the slower TP's max
    assert block.values == [b"t10", b"c20", b"t30", b"c40"]
    assert block.keys == [b"A", None, b"B", None]
    rest = m.release([False, True])
    assert rest.values == [b"t50"] and rest.keys == [None]


def test_resumed_partition_drops_records_below_its_resume_offset() -> None:
    """After a resume at offset 5 the broker may re-deliver the batch that holds it (3..7):
    3 and 4 were released before the snapshot and must not come again. No broker is needed:
    the consumer is built (librdkafka connects lazily) but never polled."""
    from confluent_kafka import TopicPartition

    from dataflows.kafka.pair_source import _PairPartition

    part = _PairPartition(
        "p0",
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "unit"},
        [TopicPartition("ticks", 0), None],
        {"ticks": 5},
        tail=True,
        batch_size=100,
        idle_release_ms=1000,
        max_buffered=1000,
    )
    try:
        assert part._next == [5, None]
        msgs = [
            Message(topic="ticks", partition=0, offset=o, value=b"v%d" % o, timestamp=(1, 1000 + o))
            for o in range(3, 8)
        ]
        part._take(0, msgs, 0.0)
        assert part.pending() == 3 and part._merger.head_offset(0) == 5 and part._next[0] == 8
        assert part.snapshot() == {"ticks": 5}
    finally:
        part.close()


def test_halving_cap_holds_back_about_half_unless_few_or_all_at_one_time() -> None:
    m = merger(2)
    add(m, 0, [10, 20, 30, 40])
    add(m, 1, [15, 25, 35, 45])
    assert m.halving_cap(9) is None  # 8 buffered: fewer than asked for
    cap = m.halving_cap(8)
    assert cap == 25
    assert names(list(m.release([True, True], cap))) == [b"0/0", b"1/0", b"0/1", b"1/1"]
    same = merger(1)
    add(same, 0, [7] * 10)
    assert same.halving_cap(2) is None  # one timestamp: nothing can be held back by a cap


def test_a_replays_last_messages_go_out_in_halves_in_order(monkeypatch: Any) -> None:
    """Every TP read to its end (tail=False): the buffered rest is released in halves down to
    FINISH_HALVING, so the store inserts one piece while the flow works on the next; nothing
    is lost, reordered or repeated, and the partition then ends."""
    import pytest
    from confluent_kafka import Consumer, TopicPartition

    from dataflows.kafka import pair_source

    class NoBroker(Consumer):
        def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
            return 0, 100

    monkeypatch.setattr(pair_source, "Consumer", NoBroker)
    monkeypatch.setattr(pair_source, "FINISH_HALVING", 40)
    part = pair_source._PairPartition(
        "p0",
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "unit"},
        [TopicPartition("ticks", 0), None],
        None,
        tail=False,
        batch_size=1000,
        idle_release_ms=1000,
        max_buffered=1000,
    )
    try:
        msgs = [
            Message(topic="ticks", partition=0, offset=o, value=b"v%d" % o, timestamp=(1, 1000 + o)) for o in range(100)
        ]
        part._take(0, msgs, 0.0)
        part._done[0] = True  # the consumer reported the end
        sizes: list[int] = []
        values: list[Any] = []
        with pytest.raises(StopIteration):
            for _ in range(10):
                for _key, block in part.next_batch():
                    assert isinstance(block, RawBlock)
                    sizes.append(len(block))
                    values += block.values
                    assert part.snapshot() == {"ticks": len(values)}
        assert sizes == [50, 25, 25]
        assert values == [b"v%d" % o for o in range(100)]
    finally:
        part.close()
