"""The signals flow's Kafka source: ticks and candles read partition pair by partition pair,
merged by ingest time (`KafkaPairSource`, its pure half `_PairMerger`, `PartitionClock`).

Why a custom source: the per-symbol leak-free join needs each symbol's ticks and candles
in ingest-time order. Producers key both topics by symbol and stamp each message with the
record's `ingest_ts` (ms), and both topics have the same partition count, so partition i
of `sentiment.ticks` and partition i of `market.candles` hold the same symbols. Source
partition "pi" reads that pair of topic-partitions (TPs) and releases their messages
merged by timestamp, holding back whatever is ahead of the slower TP.

Item shape (the contract of `dataflows.sources`): one item per non-empty `next_batch`,

    ("kafka:p<i>", RawBlock)   records (source_name, value_bytes, ts_ms | None), as columns,
                               with the message keys (`RawBlock.keys`)

    ("kafka:p<i>", ConsumerError)   a consumer error (dataflows/items.py), ahead of the
                               records released with it, so the flow records it instead of dying

with source_name `"kafka:<topic>"` (as Bytewax's KafkaSource with `raise_on_errors=False`
hands on its errors as their own item type). The keys reach the decoder, which refuses a tick or
candle whose key is not its symbol (producers key by symbol; a mismatch would put the
record in another symbol's partition and ordering).

Only `assign()` is used (no consumer groups, no commits): offsets live in Bytewax's
recovery store, as with Bytewax's own KafkaSource.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from dataflows.items import ConsumerError
from dataflows.kafka.admin import METADATA_TIMEOUT_S, topic_partition_counts
from dataflows.sources import RawBatch, RawBlock
from tickcast.gc_tuning import collection_paused, idle_collector

log = logging.getLogger(__name__)

PairItem = tuple[str, RawBatch | ConsumerError]
ResumeState = dict[str, int]  # topic -> next offset to read
_IDLE_WAKE = timedelta(milliseconds=20)
# A replay's partition before its first message: the first fetch lands within milliseconds
# of the assign, and a 20 ms nap past it is 1-2 % of a 300k-message replay.
_FIRST_WAKE = timedelta(milliseconds=2)
# build_flow, Bytewax and build_part each ask for the partition counts within a fraction of a
# second at start-up; each ask is a new AdminClient and a metadata round trip (~20-30 ms).
_COUNTS_TTL_S = 5.0
# Backfills are fetch-bound with librdkafka's defaults (1 MiB per partition per
# fetch, a 100k-message prefetch): big fetches and a deep prefetch make the raw
# consume loop ~4x faster. The prefetch bound (queued.max.messages.kbytes) is per
# TP, and a worker holds two TPs per source partition it reads, so it is 256 MiB
# rather than the 1 GiB tried: that still holds the 1M-message prefetch of
# ~150-byte ticks (queued.min.messages binds first for them) while bounding a
# worker with 4 source partitions to 2 GiB of prefetch if messages are large.
# The 10 ms fetch wait costs an idle tailing consumer ~100 fetch requests/s.
FETCH_CONFIG: dict[str, Any] = {
    "fetch.message.max.bytes": 16 << 20,
    "fetch.max.bytes": 64 << 20,
    "queued.min.messages": 1_000_000,
    "queued.max.messages.kbytes": 256 << 10,
    "fetch.wait.max.ms": 10,
}


_EMPTY = np.empty(0, dtype=np.int64)  # never written to: buffers are replaced, not appended in place
# A replay's last release (every TP read to its end) goes out in halves while it holds at least
# this many messages: the store's writer inserts one half while the flow works on the next, where
# a whole last batch (~100-200k messages) is inserted alone after the flow is done with it. Each
# piece is one more activation (a few ms, ~30 ms with 1,000 symbols); the halving stops at this size.
FINISH_HALVING = 60_000


class _PairMerger:
    """The pure half of a pair partition: per-TP FIFO buffers and the release rule.

    Messages arrive per TP as whole arrays (one `add` per TP per consumed batch) and are
    kept in offset order, so a release is always an offset prefix of each TP and the
    snapshot (offset of the first unreleased message) never re-emits a released one.
    Merging uses an *effective* timestamp, the running max of timestamps within the TP,
    so a message stamped earlier than its predecessor cannot jump it; effective
    timestamps are therefore non-decreasing per TP, which makes the release prefix a
    binary search.
    """

    def __init__(self, names: list[str]) -> None:
        n = len(names)
        self.names = list(names)  # source name of each TP's records
        self.eff: list[np.ndarray] = [_EMPTY] * n  # effective ts (ms, -1 before any valid one)
        self.offsets: list[np.ndarray] = [_EMPTY] * n
        self.stamps: list[np.ndarray] = [_EMPTY] * n  # the messages' own ts (ms, -1 = none): the hints
        self.values: list[list[Any]] = [[] for _ in range(n)]
        self.keys: list[list[bytes | None]] = [[] for _ in range(n)]  # the messages' keys
        self.max_seen: list[int | None] = [None] * n  # None until the TP delivered a message

    def add(
        self, i: int, ts: np.ndarray, values: list[Any], offsets: np.ndarray, keys: list[bytes | None] | None = None
    ) -> None:
        """Append TP i's next messages: `ts` int64 ms, -1 where the message has no usable
        timestamp; `values` their payloads; `offsets` increasing; `keys` their keys (None: none)."""
        if not values:
            return
        if keys is None:
            keys = [None] * len(values)
        ts = ts.astype(np.int64, copy=False)
        prev = self.max_seen[i]
        # Running max seeded with the TP's max so far; invalid stamps (< 0) sink to -1 or to it.
        eff = np.maximum.accumulate(np.maximum(ts, -1 if prev is None else prev))
        self.max_seen[i] = int(eff[-1])
        if self.values[i]:
            self.eff[i] = np.concatenate((self.eff[i], eff))
            self.offsets[i] = np.concatenate((self.offsets[i], offsets))
            self.stamps[i] = np.concatenate((self.stamps[i], ts))
            self.values[i].extend(values)
            self.keys[i].extend(keys)
        else:
            self.eff[i], self.offsets[i], self.stamps[i] = eff, np.asarray(offsets, dtype=np.int64), ts
            self.values[i] = list(values)
            self.keys[i] = list(keys)

    def pending(self, i: int | None = None) -> int:
        return sum(map(len, self.values)) if i is None else len(self.values[i])

    def halving_cap(self, at_least: int) -> int | None:
        """An effective-ts cap under which about half of the buffered messages are (`release`'s
        `cap`), or None to release them all: fewer than `at_least` buffered, or no cap below
        the newest effective ts would hold any back."""
        n = self.pending()
        if n < max(at_least, 2):
            return None
        effs = np.concatenate([e for e in self.eff if len(e)])
        cap = int(np.partition(effs, n // 2 - 1)[n // 2 - 1])  # the (n/2)-th smallest
        return cap if cap < int(effs.max()) else None

    def head_offset(self, i: int) -> int | None:
        return int(self.offsets[i][0]) if self.values[i] else None

    def position(self, done: list[bool]) -> float:
        """The smallest effective ts this pair may still release (-inf: a TP shown nothing yet)."""
        lows = []
        for i, eff in enumerate(self.eff):
            if len(eff):
                lows.append(float(eff[0]))
            elif done[i]:
                lows.append(float("inf"))
            else:
                seen = self.max_seen[i]
                lows.append(float("-inf") if seen is None else float(seen))
        return min(lows) if lows else float("inf")

    def release(self, exempt: list[bool], cap: int | None = None) -> RawBlock:
        """Messages with effective ts ≤ min over non-exempt TPs of the max ts seen there
        (and ≤ `cap`), merged by (ts, TP index, offset): ticks (index 0) go first on ties."""
        seen = [m for m, ex in zip(self.max_seen, exempt, strict=True) if not ex]
        bounds = [m for m in seen if m is not None]
        if len(bounds) < len(seen):
            return RawBlock(self.names, [], _EMPTY)  # a TP that may still deliver has shown nothing yet
        frontier = min(bounds) if bounds else None
        if cap is not None:
            frontier = cap if frontier is None else min(frontier, cap)
        parts = []  # (TP index, released effective ts, offsets, stamps, values, keys)
        for i, eff in enumerate(self.eff):
            k = len(eff) if frontier is None else int(np.searchsorted(eff, frontier, side="right"))
            if k:
                parts.append((i, *self._pop(i, k)))
        if not parts:
            return RawBlock(self.names, [], _EMPTY)
        if len(parts) == 1:
            i, _, _, stamps, values, keys = parts[0]
            return RawBlock((self.names[i],), values, stamps, keys=keys)
        effs = np.concatenate([p[1] for p in parts])
        tp_index = np.concatenate([np.full(len(p[1]), p[0], dtype=np.int64) for p in parts])
        offsets = np.concatenate([p[2] for p in parts])
        stamps = np.concatenate([p[3] for p in parts])
        values = [v for p in parts for v in p[4]]
        keys = [key for p in parts for key in p[5]]
        order = np.lexsort((offsets, tp_index, effs)).tolist()  # last key is the primary one
        return RawBlock(
            self.names, [values[j] for j in order], stamps[order], tp_index[order], [keys[j] for j in order]
        )

    def _pop(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any], list[bytes | None]]:
        """Remove and return TP i's first k messages."""
        eff, offsets, stamps, values, keys = self.eff[i], self.offsets[i], self.stamps[i], self.values[i], self.keys[i]
        if k == len(values):
            self.eff[i], self.offsets[i], self.stamps[i], self.values[i], self.keys[i] = _EMPTY, _EMPTY, _EMPTY, [], []
            return eff, offsets, stamps, values, keys
        self.eff[i], self.offsets[i], self.stamps[i] = eff[k:], offsets[k:], stamps[k:]
        head, head_keys = values[:k], keys[:k]
        del values[:k], keys[:k]
        return eff[:k], offsets[:k], stamps[:k], head, head_keys


class PartitionClock:
    """Keeps a replay's source partitions within `max_skew_ms` of ingest time of each other.

    Read to its end as fast as it goes, one partition can run hours of event time ahead of
    another (each next_batch takes a whole fetch), and steps downstream that order across
    symbols by event time (the trading stage, dataflows/trading/ordering.py) would see the
    lagging partition's records late. Every partition of the source in this process reports
    the smallest timestamp it may still release; each releases only up to the slowest one's
    + `max_skew_ms`. Applied when all `expected` partitions are in this process (a
    replay: one process); a cluster spreads them over processes, and then it is off.
    """

    def __init__(self, expected: int, max_skew_ms: int) -> None:
        self.expected = expected
        self.max_skew_ms = max_skew_ms
        self._positions: dict[str, float] = {}
        self._lock = threading.Lock()

    def register(self, key: str) -> None:
        """A partition built in this process (before it reads anything: it holds the others back)."""
        with self._lock:
            self._positions.setdefault(key, float("-inf"))

    def cap(self, key: str, position: float) -> int | None:
        with self._lock:
            self._positions[key] = position
            if len(self._positions) < self.expected:
                return None
            slowest = min(self._positions.values())
        if slowest == float("inf"):
            return None
        if slowest == float("-inf"):
            return -1  # a partition has not shown its first message yet: wait for it
        return int(slowest) + self.max_skew_ms


def _stamped_values(msgs: list[Message]) -> tuple[np.ndarray, list[Any], list[bytes | None]]:
    """`(ts, values, keys)` of data messages: ts int64 ms, -1 where the message has none usable
    (type 0 = not available, or negative)."""
    # map over the unbound C methods and flatten the (type, ts) pairs in C: no Python per message
    pairs = np.fromiter(
        itertools.chain.from_iterable(map(Message.timestamp, msgs)), dtype=np.int64, count=2 * len(msgs)
    ).reshape(-1, 2)
    ts = np.where((pairs[:, 0] != 0) & (pairs[:, 1] >= 0), pairs[:, 1], -1)
    return ts, list(map(Message.value, msgs)), list(map(Message.key, msgs))


def _fresh(offsets: np.ndarray, next_offset: int | None) -> np.ndarray:
    """Mask of the messages to keep: each offset must exceed every offset before it (and be
    ≥ `next_offset`); after a pause/resume librdkafka can deliver an already-taken one again."""
    floor = np.iinfo(np.int64).min if next_offset is None else next_offset - 1
    before = np.maximum.accumulate(np.concatenate(([floor], offsets[:-1])))
    return offsets > before


class _PairPartition(StatefulSourcePartition[PairItem, ResumeState]):
    def __init__(
        self,
        key: str,
        config: dict[str, Any],
        tps: list[TopicPartition | None],
        resume: ResumeState | None,
        *,
        tail: bool,
        batch_size: int,
        idle_release_ms: int,
        max_buffered: int,
        clock: PartitionClock | None = None,
    ) -> None:
        self._key = key
        self._clock = clock
        if clock is not None:
            clock.register(key)
        self._tail = tail
        self._batch_size = batch_size
        self._idle_s = idle_release_ms / 1000.0
        self._max_buffer = max_buffered
        self._tps = tps
        self._index = {(tp.topic, tp.partition): i for i, tp in enumerate(tps) if tp is not None}
        # The consumer is assigned only these TPs and their topics differ (checked by
        # KafkaPairSource), so a message's topic alone names its TP.
        self._topic_index = {tp.topic: i for i, tp in enumerate(tps) if tp is not None}
        self._names = [f"kafka:{tp.topic}" if tp else "" for tp in tps]
        self._merger = _PairMerger(self._names)
        resume = resume or {}
        self._start = [resume.get(tp.topic, OFFSET_BEGINNING) if tp else OFFSET_BEGINNING for tp in tps]
        # offset after the last message consumed; from a resume offset on, so a re-delivery of
        # records below it (the broker may answer a fetch with the whole batch) is dropped by _fresh
        self._next: list[int | None] = [s if s >= 0 else None for s in self._start]
        self._paused = [False] * len(tps)
        self.pauses = 0  # times a TP was paused for its backlog (tests, metrics)
        now = time.monotonic()
        self._last_msg = [now] * len(tps)
        self._delivered = False  # until the first message of either TP
        self._exempt = [False] * len(tps)
        self._eof_at = [-1] * len(tps)  # the newest end offset the consumer reported per TP (-1: none yet)
        self._done = [tp is None for tp in tps]
        self._idle = False
        self._consumer = Consumer(config)
        live = {i: tp for i, tp in enumerate(tps) if tp is not None}
        self._high: list[int] = [0] * len(tps)
        if not tail:
            # A lower bound for "the end": tansu's ListOffsets answers with the last batch's
            # base offset + 1, below the true end, so done = a partition-EOF event at an
            # offset ≥ this, never "position ≥ this" alone.
            for i, tp in live.items():
                self._high[i] = self._consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S, cached=False)[1]
        self._consumer.assign([TopicPartition(tp.topic, tp.partition, self._start[i]) for i, tp in live.items()])

    def next_batch(self) -> list[PairItem]:
        errors: list[ConsumerError] = []
        with collection_paused():  # the batch's Message objects live and die in _consume
            consumed, now = self._consume(errors)
        # A tailing TP runs ahead of the other only when the other is caught up (its consumer
        # reached the end) and has delivered nothing for idle_s: a TP whose messages wait in the
        # consumer behind the other's (one fetch can bring a whole backlog of one topic) is not idle.
        exempt = [
            self._done[i] or (self._tail and self._at_end(i) and now - self._last_msg[i] >= self._idle_s)
            for i in range(len(self._tps))
        ]
        for i, ex in enumerate(exempt):
            changed = self._tps[i]
            if ex != self._exempt[i] and changed is not None and not self._done[i]:
                log.info(
                    "%s: %s %s (the other topic's messages are released without waiting for it)",
                    self._key,
                    changed.topic,
                    "caught up and idle" if ex else "delivering again",
                )
        self._exempt = exempt
        cap = None if self._clock is None else self._clock.cap(self._key, self._merger.position(self._done))
        if not self._tail and all(self._done):  # the replay's last messages: see FINISH_HALVING
            half = self._merger.halving_cap(FINISH_HALVING)
            if half is not None:
                cap = half if cap is None else min(cap, half)
        out: RawBatch = self._merger.release(exempt, cap)
        self._flow_control()
        if not self._tail and all(self._done) and not self._merger.pending() and not out and not errors:
            raise StopIteration
        self._idle = not consumed and not out
        if self._tail:  # live: collect garbage while there is nothing to do (tickcast/gc_tuning.py)
            idle_collector.polled(not self._idle or bool(errors))
        items: list[PairItem] = [(self._key, err) for err in errors]  # errors go first, as they arrived
        if out:
            items.append((self._key, out))
        return items

    def _consume(self, errors: list[ConsumerError]) -> tuple[bool, float]:
        """One consume into the merger (consumer errors appended to `errors`): whether the
        consumer handed anything over, and the time it did."""
        msgs = self._consumer.consume(num_messages=self._batch_size, timeout=0.0)
        now = time.monotonic()
        if msgs:
            for i, group in self._by_tp(self._drop_errors(msgs, errors)):
                self._take(i, group, now)
        return bool(msgs), now

    def _at_end(self, i: int) -> bool:
        """The consumer reported TP i's end at or after the last message taken from it."""
        return self._eof_at[i] >= 0 and self._eof_at[i] >= (self._next[i] or 0)

    def _drop_errors(self, msgs: list[Any], out: list[ConsumerError]) -> list[Any]:
        """The data messages of `msgs`; error events (rare: partition EOF, broker trouble)
        are handled here, in arrival order, consumer errors appended to `out`."""
        errors = list(map(Message.error, msgs))
        # `is` only: KafkaError == None leaves a TypeError set in confluent-kafka's C code
        if not [e for e in errors if e is not None]:
            return msgs
        for msg, err in zip(msgs, errors):
            if err is None:
                continue
            i = self._index.get((msg.topic(), msg.partition()))
            if err.code() == KafkaError._PARTITION_EOF:
                if i is not None and not self._tail and msg.offset() >= self._high[i]:
                    self._done[i] = True
                if i is not None:
                    self._eof_at[i] = max(self._eof_at[i], msg.offset())
                continue
            error = ConsumerError(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, err.str())
            log.warning("kafka consumer error in %s: %s", self._key, error.text())
            out.append(error)
        return [m for m, err in zip(msgs, errors) if err is None]

    def _by_tp(self, msgs: list[Any]) -> list[tuple[int, list[Any]]]:
        """(TP index, its messages in arrival order) per TP present; unknown TPs dropped."""
        if not msgs:
            return []
        if len(self._topic_index) == 1:  # one live TP: every data message is from it
            return [(i, msgs) for i in self._topic_index.values()]
        topics = list(map(Message.topic, msgs))
        first = topics[0]
        if topics.count(first) == len(topics):  # the usual case: one TP per consumed batch
            i = self._topic_index.get(first or "")
            return [] if i is None else [(i, msgs)]
        return [
            (i, group)
            for topic, i in self._topic_index.items()
            if (group := [m for m, t in zip(msgs, topics) if t == topic])
        ]

    def _take(self, i: int, msgs: list[Any], now: float) -> None:
        offsets = np.fromiter(map(Message.offset, msgs), dtype=np.int64, count=len(msgs))
        keep = _fresh(offsets, self._next[i])
        if not keep.all():  # re-fetched after a pause/resume; already buffered or released
            idx = np.flatnonzero(keep)
            if not len(idx):
                return
            msgs = [msgs[j] for j in idx.tolist()]
            offsets = offsets[idx]
        self._next[i] = int(offsets[-1]) + 1
        if not self._delivered:
            # Idleness counts from the partition's first message, not from its build: a slow
            # consumer start (seconds on a busy host) must not let one topic run ahead.
            self._last_msg = [now] * len(self._tps)
            self._delivered = True
        self._last_msg[i] = now
        ts, values, keys = _stamped_values(msgs)
        self._merger.add(i, ts, values, offsets, keys)

    def _flow_control(self) -> None:
        """Pause a TP whose unreleased backlog is large (it is ahead of the other one; the
        lagging TP's buffer is always fully released), resume it once it drains."""
        for i, tp in enumerate(self._tps):
            if tp is None:
                continue
            n = self._merger.pending(i)
            if not self._paused[i] and n >= self._max_buffer:
                self._consumer.pause([tp])
                self._paused[i] = True
                self.pauses += 1
            elif self._paused[i] and n <= self._max_buffer // 2:
                self._consumer.resume([tp])
                self._paused[i] = False

    def next_awake(self) -> datetime | None:
        if not self._idle:
            return None
        wake = _FIRST_WAKE if not self._tail and not self._delivered else _IDLE_WAKE
        return datetime.now(UTC) + wake

    def snapshot(self) -> ResumeState:
        state = {}
        for i, tp in enumerate(self._tps):
            if tp is None:
                continue
            head = self._merger.head_offset(i)
            nxt = self._next[i]
            state[tp.topic] = head if head is not None else (nxt if nxt is not None else self._start[i])
        return state

    def pending(self) -> int:
        """Messages consumed but not yet released (for tests and metrics)."""
        return self._merger.pending()

    def close(self) -> None:
        self._consumer.close()


class KafkaPairSource(FixedPartitionedSource[PairItem, ResumeState]):
    """Reads `tick_topic` and `candle_topic` partition by partition pair, merged by message
    timestamp (= the producer's `ingest_ts`).

    A TP holds the other back until it has shown a later timestamp, unless it is done
    (tail=False: reached the end it had at build time), caught up and idle (tail=True: the
    consumer reported its end and nothing came for `idle_release_ms` of wall clock, counted
    from the partition's first message), or missing. tail=False ends the flow once every TP is done
    and drained (backfills). Snapshot: `{topic: next offset}`, buffered-but-unreleased
    messages included, so a resume re-reads exactly those.

    A TP whose held-back backlog reaches `max_buffered` messages is paused until half of
    it is released (memory bound in backfills; pausing drops librdkafka's prefetch, so
    keep it well above `batch_size`).
    """

    def __init__(
        self,
        brokers: str,
        tick_topic: str,
        candle_topic: str,
        *,
        tail: bool,
        batch_size: int = 5000,
        idle_release_ms: int = 2000,
        max_buffered: int = 100_000,
        add_config: dict[str, Any] | None = None,
        max_skew_ms: int | None = 600_000,
    ) -> None:
        if tick_topic == candle_topic:
            raise ValueError(f"tick and candle topics must differ, got {tick_topic!r} twice")
        self.brokers = brokers
        self.topics = (tick_topic, candle_topic)
        self.tail = tail
        self.batch_size = batch_size
        self.idle_release_ms = idle_release_ms
        self.max_buffered = max(max_buffered, 2 * batch_size)
        self.add_config = dict(add_config or {})
        # replays only: partitions stay within max_skew_ms of each other (see PartitionClock)
        self.max_skew_ms = None if tail else max_skew_ms
        self._clock: PartitionClock | None = None
        self._counts_at: tuple[float, list[int]] | None = None  # (monotonic time, counts) of the last ask

    def _counts(self) -> list[int]:
        """Partitions of (tick topic, candle topic); a count read less than `_COUNTS_TTL_S` ago
        is reused (start-up asks three times in a row), a failed read never is."""
        now = time.monotonic()
        if self._counts_at is not None and now - self._counts_at[0] < _COUNTS_TTL_S:
            return list(self._counts_at[1])
        counts = topic_partition_counts(self.brokers, self.topics, add_config=self.add_config)
        if not any(counts.values()):
            raise RuntimeError(
                f"neither Kafka topic {self.topics[0]!r} nor {self.topics[1]!r} exists at {self.brokers!r}; "
                "create them (tickcast's ensure_topics) or fix the topic names"
            )
        out = [counts[t] for t in self.topics]
        self._counts_at = (now, out)
        return list(out)

    def list_parts(self) -> list[str]:
        counts = self._counts()
        if counts[0] != counts[1]:
            log.warning(
                "topics %s have %s partitions: symbols are not co-partitioned, ticks and candles "
                "of one symbol may be read by different partitions",
                self.topics,
                counts,
            )
        parts = [f"p{i}" for i in range(max(counts))]
        if self.max_skew_ms is not None and self._clock is None and len(parts) > 1:
            self._clock = PartitionClock(len(parts), self.max_skew_ms)
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: ResumeState | None) -> _PairPartition:
        if not for_part.startswith("p") or not for_part[1:].isdigit():
            raise ValueError(f"KafkaPairSource partition must look like 'p<i>', got {for_part!r}")
        idx = int(for_part[1:])
        counts = self._counts()
        tps = [TopicPartition(t, idx) if idx < n else None for t, n in zip(self.topics, counts, strict=True)]
        config = {
            "bootstrap.servers": self.brokers,
            "group.id": "tickcast-ignored",  # required by librdkafka; unused with assign()
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **FETCH_CONFIG,
            **self.add_config,
        }
        return _PairPartition(
            f"kafka:{for_part}",
            config,
            tps,
            resume_state,
            tail=self.tail,
            batch_size=self.batch_size,
            idle_release_ms=self.idle_release_ms,
            max_buffered=self.max_buffered,
            clock=self._clock,
        )
