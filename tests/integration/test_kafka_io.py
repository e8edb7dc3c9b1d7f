"""Kafka I/O against a real Kafka-protocol broker (tansu, the `kafka_broker` fixture)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from dataflows.items import ConsumerError
from dataflows.kafka.admin import ensure_topics, topic_partition_counts
from dataflows.kafka.consume import consume_json
from dataflows.kafka.pair_source import KafkaPairSource
from dataflows.kafka.produce import KafkaDeliveryError, KafkaJsonSink, produce_records

SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")
T0 = 1_763_683_200_000
MIN = 60_000


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"ticks-{tag}", f"candles-{tag}"


def make_records(seed: int, minutes: int = 120) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """4 ticks and 1 candle per minute per symbol; each topic sorted by ingest_ts, as a live
    producer would write it."""
    rng = np.random.default_rng(seed)
    ticks, candles = [], []
    for s in SYMBOLS:
        for m in range(minutes):
            open_time = T0 + m * MIN
            close = open_time + MIN
            candles.append(
                {
                    "symbol": s,
                    "interval": "1m",
                    "open_time": open_time,
                    "close_time": close,
                    "close": 1.0 + m,
                    "ingest_ts": close + int(rng.integers(0, 1500)),
                    "id": f"c-{s}-{m}",
                }
            )
            for k in range(4):
                ts = open_time + k * 15_000 + int(rng.integers(0, 15_000))
                ticks.append(
                    {
                        "symbol": s,
                        "ts": ts,
                        "score": float(rng.uniform(-1, 1)),
                        "provider": "p",
                        "ingest_ts": ts + int(rng.integers(0, 3000)),
                        "id": f"t-{s}-{m}-{k}",
                    }
                )
    ticks.sort(key=lambda r: r["ingest_ts"])
    candles.sort(key=lambda r: r["ingest_ts"])
    return ticks, candles


def load_pair(broker: str, partitions: int, seed: int, minutes: int = 120) -> tuple[str, str, list[dict[str, Any]]]:
    """Candles first, then ticks: a reader of independent partitions sees candles hours ahead."""
    tick_topic, candle_topic = names()
    ensure_topics(broker, {tick_topic: partitions, candle_topic: partitions})
    ticks, candles = make_records(seed, minutes)
    assert produce_records(broker, candle_topic, candles) == len(candles)
    assert produce_records(broker, tick_topic, ticks) == len(ticks)
    return tick_topic, candle_topic, ticks + candles


def read_raw(broker: str, topic: str, partitions: int) -> list[tuple[int, bytes | None, int, bytes]]:
    """(partition, key, timestamp, value) of every message, read to the end with assign()."""
    c = Consumer({"bootstrap.servers": broker, "group.id": "t", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in range(partitions)])
    out, eof, deadline = [], set(), time.monotonic() + 20
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in c.consume(500, 0.1):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                eof.add(m.partition())
            else:
                out.append((m.partition(), m.key(), m.timestamp()[1], m.value()))
    c.close()
    assert len(eof) == partitions, "did not reach the end of every partition"
    return out


def java_murmur2_partition(key: bytes, n: int) -> int:
    """Kafka's Java DefaultPartitioner: murmur2(key) & 0x7fffffff % n (an independent oracle)."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    h = (0x9747B28C ^ len(key)) & mask
    for i in range(0, len(key) // 4 * 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = len(key) % 4
    base = len(key) // 4 * 4
    if tail == 3:
        h ^= key[base + 2] << 16
    if tail >= 2:
        h ^= key[base + 1] << 8
    if tail >= 1:
        h ^= key[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % n


def run_flow(flow: Dataflow, *, timeout: float = 30, **kw: Any) -> None:
    """run_main in a thread; fail if it does not end by itself."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            run_main(flow, **kw)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["exc"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"flow did not end within {timeout}s"
    if "exc" in box:
        raise box["exc"]


def records_of(out: list[Any]) -> list[tuple[str, dict[str, Any], int | None]]:
    """Flatten ("kafka:p<i>", [(source, value, ts)]) items into (source, record, ts)."""
    flat = []
    for key, batch in out:
        assert key.startswith("kafka:p")
        flat.extend((src, orjson.loads(v), ts) for src, v, ts in batch)
    return flat


def assert_ingest_order(recs: list[dict[str, Any]]) -> None:
    by_symbol: dict[str, list[int]] = defaultdict(list)
    for r in recs:
        by_symbol[r["symbol"]].append(r["ingest_ts"])
    for symbol, seq in by_symbol.items():
        bad = [i for i in range(1, len(seq)) if seq[i] < seq[i - 1]]
        assert not bad, f"{symbol}: ingest_ts goes back at position {bad[0]}: {seq[bad[0] - 1]} -> {seq[bad[0]]}"


def test_produce_records_round_trip(kafka_broker: str) -> None:
    tick_topic, candle_topic = names()
    ensure_topics(kafka_broker, {tick_topic: 3, candle_topic: 3})
    ensure_topics(kafka_broker, {tick_topic: 3, candle_topic: 3})  # idempotent
    ticks, candles = make_records(seed=1, minutes=10)
    assert produce_records(kafka_broker, tick_topic, ticks) == len(ticks)
    assert produce_records(kafka_broker, candle_topic, candles) == len(candles)

    for topic, recs in ((tick_topic, ticks), (candle_topic, candles)):
        got = read_raw(kafka_broker, topic, 3)
        assert sorted(v for *_, v in got) == sorted(orjson.dumps(r) for r in recs)
        for part, key, ts, value in got:
            rec = orjson.loads(value)
            assert key == rec["symbol"].encode()
            assert ts == rec["ingest_ts"]
            assert part == java_murmur2_partition(key, 3), "not the Java client's partition for this key"


def test_pair_source_flow_orders_per_symbol_and_ends(kafka_broker: str) -> None:
    tick_topic, candle_topic, produced = load_pair(kafka_broker, partitions=2, seed=2)
    out: list[Any] = []
    flow = Dataflow("pair")
    src = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False, batch_size=97)
    op.output("out", op.input("in", flow, src), TestingSink(out))
    run_flow(flow)

    flat = records_of(out)
    assert Counter(r["id"] for _, r, _ in flat) == Counter(r["id"] for r in produced)
    assert len(flat) == len(produced)
    for src_name, rec, ts in flat:
        assert src_name == f"kafka:{tick_topic if 'ts' in rec else candle_topic}"
        assert ts == rec["ingest_ts"]
    assert_ingest_order([r for _, r, _ in flat])


@pytest.mark.parametrize("batch_size", [2, 500])
def test_pair_partition_merges_by_running_max_timestamp(kafka_broker: str, batch_size: int) -> None:
    """A tick stamped earlier than the one before it stays behind it; no equal stamps across
    the topics, so the order is the same whatever each consume() returns."""
    tick_topic, candle_topic = names()
    ensure_topics(kafka_broker, {tick_topic: 1, candle_topic: 1})
    tick_ts = {"t10": 10, "t30": 30, "t20": 20, "t40": 40}  # in produce (offset) order
    candle_ts = {"c15": 15, "c25": 25, "c35": 35}
    for topic, stamps in ((candle_topic, candle_ts), (tick_topic, tick_ts)):
        produce_records(kafka_broker, topic, [{"symbol": "A", "id": k, "ingest_ts": T0 + v} for k, v in stamps.items()])
    part = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False, batch_size=batch_size).build_part(
        "in", "p0", None
    )
    got = _drain(part)
    # worked by hand: the ticks' running max is 10 30 30 40, so t20 (30) sorts after t30
    assert [orjson.loads(v)["id"] for _, v, _ in got] == ["t10", "c15", "c25", "t30", "t20", "c35", "t40"]
    assert [ts for _, _, ts in got] == [T0 + v for v in (10, 15, 25, 30, 20, 35, 40)], "not the message's own stamp"
    assert [src for src, _, _ in got] == [
        f"kafka:{tick_topic if k[0] == 't' else candle_topic}"
        for k in ("t10", "c15", "c25", "t30", "t20", "c35", "t40")
    ]


def test_pair_partition_resume_from_snapshot(kafka_broker: str) -> None:
    tick_topic, candle_topic, produced = load_pair(kafka_broker, partitions=1, seed=3)
    # a small backlog bound, so the pause/resume path (librdkafka drops its prefetch) runs too
    src = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False, batch_size=50, max_buffered=200)
    assert src.list_parts() == ["p0"]

    def drain(part: Any, limit: int | None) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while limit is None or len(got) < limit:
            assert time.monotonic() < deadline, "partition neither released nor ended"
            try:
                batch = part.next_batch()
            except StopIteration:
                break
            got.extend(rec for _, b in batch for rec in b)
            if not batch:
                time.sleep(0.005)
        return got

    part = src.build_part("in", "p0", None)
    first = drain(part, len(produced) // 2)
    assert len(first) < len(produced)
    held = part.pending()
    state = part.snapshot()
    part.close()
    assert set(state) == {tick_topic, candle_topic}
    assert held > 0, "nothing was buffered at the snapshot: the test would not exercise re-reading"

    part2 = src.build_part("in", "p0", state)
    second = drain(part2, None)
    part2.close()
    assert part.pauses + part2.pauses > 0
    ids = [orjson.loads(v)["id"] for _, v, _ in first + second]
    assert Counter(ids) == Counter(r["id"] for r in produced), "lost or duplicated across the resume"
    assert_ingest_order([orjson.loads(v) for _, v, _ in first + second])


def test_pair_source_recovery_resumes_after_last_snapshot(kafka_broker: str, tmp_path: Path) -> None:
    tick_topic, candle_topic, produced = load_pair(kafka_broker, partitions=2, seed=4)
    init_db_dir(tmp_path, 1)
    crash_after = 3 * len(produced) // 4  # late enough that many epochs (and snapshots) have committed

    def build(crash: bool, out: list[str]) -> Dataflow:
        seen = [0]

        def maybe_crash(rec: dict[str, Any]) -> dict[str, Any]:
            # Fault injection: an exception in a step kills the worker like a crash would,
            # after some epochs (and snapshots) have been committed.
            seen[0] += 1
            if crash and seen[0] > crash_after:
                raise RuntimeError("simulated crash")
            return rec

        flow = Dataflow("recov")
        src = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False, batch_size=20)
        batches = op.map("slow", op.input("in", flow, src), lambda kb: (time.sleep(0.02), kb)[1])
        recs = op.flat_map("flat", batches, lambda kb: [orjson.loads(v) for _, v, _ in kb[1]])
        ids = op.map("id", op.map("crash", recs, maybe_crash), lambda r: r["id"])
        op.output("out", ids, TestingSink(out))
        return flow

    cfg = RecoveryConfig(tmp_path)
    run1: list[str] = []
    with pytest.raises(Exception) as info:
        run_flow(build(True, run1), epoch_interval=timedelta(milliseconds=50), recovery_config=cfg)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("simulated crash" in text for text in chain), chain
    assert 0 < len(run1) <= crash_after  # the crashing batch never reaches the sink

    run2: list[str] = []
    run_flow(build(False, run2), epoch_interval=timedelta(milliseconds=50), recovery_config=cfg)
    everything = {r["id"] for r in produced}
    assert set(run1) | set(run2) == everything, "a message was never seen"
    assert len(set(run2)) < len(everything), "the second run replayed everything"
    assert not set(run1[:100]) & set(run2), "the second run re-read items from before the last snapshot"
    assert Counter(run2).most_common(1)[0][1] == 1, "one run emitted a message twice"


def test_kafka_json_sink_round_trip(kafka_broker: str) -> None:
    topic = f"predictions-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_broker, {topic: 2})
    items = [{"symbol": SYMBOLS[i % 3], "p_up": i / 50, "ts": T0 + i} for i in range(50)]
    flow = Dataflow("sink")
    op.output(
        "out",
        op.input("in", flow, TestingSource(items, batch_size=7)),
        KafkaJsonSink(kafka_broker, topic, key=lambda d: d["symbol"], timestamp=lambda d: d["ts"]),
    )
    run_flow(flow)

    got = list(consume_json(kafka_broker, topic, idle_timeout_s=1.0))
    assert sorted(got, key=lambda d: d["ts"]) == items
    for part, key, ts, value in read_raw(kafka_broker, topic, 2):
        rec = orjson.loads(value)
        assert (key, ts, part) == (rec["symbol"].encode(), rec["ts"], java_murmur2_partition(key, 2))


def test_delivery_failures_raise(kafka_broker: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens here once closed
    fast_fail = {"message.timeout.ms": 300, "log_level": 0}
    with pytest.raises(KafkaDeliveryError, match=r"2 messages failed delivery.*Message timed out"):
        produce_records(dead, "x", [{"symbol": "A"}, {"symbol": "B"}], add_config=fast_fail)
    part = KafkaJsonSink(dead, "x", add_config=fast_fail).build("out", 0, 1)
    with pytest.raises(KafkaDeliveryError, match="1 messages failed delivery"):
        part.write_batch([{"a": 1}])


def test_missing_topics_are_named_and_not_created(kafka_broker: str) -> None:
    tick_topic, candle_topic = names()
    with pytest.raises(RuntimeError) as info:
        KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False).list_parts()
    for word in (tick_topic, candle_topic, kafka_broker):
        assert word in str(info.value)
    # metadata lookups must not auto-create them (tansu creates topics asked for by name)
    assert topic_partition_counts(kafka_broker, [tick_topic, candle_topic]) == {tick_topic: 0, candle_topic: 0}


def test_one_missing_topic_does_not_hold_the_other_back(kafka_broker: str) -> None:
    tick_topic, candle_topic = names()
    ensure_topics(kafka_broker, {tick_topic: 2})
    ticks, _ = make_records(seed=5, minutes=5)
    produce_records(kafka_broker, tick_topic, ticks)
    src = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False)
    assert src.list_parts() == ["p0", "p1"]
    out: list[Any] = []
    flow = Dataflow("one")
    op.output("out", op.input("in", flow, src), TestingSink(out))
    run_flow(flow)
    assert sorted(r["id"] for _, r, _ in records_of(out)) == sorted(r["id"] for r in ticks)


def test_tail_mode_releases_after_idle_and_keeps_running(kafka_broker: str) -> None:
    tick_topic, candle_topic = names()
    ensure_topics(kafka_broker, {tick_topic: 1, candle_topic: 1})
    ticks, _ = make_records(seed=6, minutes=3)
    produce_records(kafka_broker, tick_topic, ticks)
    part = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=True, idle_release_ms=400).build_part(
        "in", "p0", None
    )
    start = time.monotonic()
    got: list[Any] = []
    first_at = None
    while time.monotonic() - start < 1.5:  # a tail partition never raises StopIteration
        for _, batch in part.next_batch():
            first_at = first_at or time.monotonic() - start
            got.extend(batch)
        time.sleep(0.01)
    part.close()
    assert first_at is not None and first_at >= 0.4, f"released at {first_at}s, before the empty TP went idle"
    assert sorted(orjson.loads(v)["id"] for _, v, _ in got) == sorted(r["id"] for r in ticks)


def _error_message(topic: str) -> Message:
    """A consumer error event as librdkafka hands one over (a real Message carrying an error)."""
    return Message(
        topic=topic, partition=0, offset=-1, error=KafkaError(KafkaError._TRANSPORT, "broker connection lost")
    )


class _InjectingConsumer:
    """Delegates to a real consumer; its first consume() also returns one error message."""

    def __init__(self, real: Consumer, topic: str) -> None:
        self.real, self.topic, self.fired = real, topic, False

    def consume(self, **kw: Any) -> list[Any]:
        msgs = self.real.consume(**kw)
        if not self.fired:
            self.fired = True
            return [_error_message(self.topic), *msgs]
        return msgs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_consumer_errors_become_items(kafka_broker: str) -> None:
    tick_topic, candle_topic = names()
    ensure_topics(kafka_broker, {tick_topic: 1, candle_topic: 1})
    ticks, candles = make_records(seed=7, minutes=2)
    produce_records(kafka_broker, tick_topic, ticks)
    produce_records(kafka_broker, candle_topic, candles)
    part = KafkaPairSource(kafka_broker, tick_topic, candle_topic, tail=False).build_part("in", "p0", None)
    part._consumer = _InjectingConsumer(part._consumer, tick_topic)
    got = _drain(part)
    errors = [g for g in got if isinstance(g, ConsumerError)]
    assert len(errors) == 1 and errors[0].topic == tick_topic
    assert "broker connection lost" in errors[0].text()
    assert len(got) - 1 == len(ticks) + len(candles)


def _drain(part: Any) -> list[Any]:
    """Every record a tail=False partition releases, until it stops (StopIteration)."""
    got: list[Any] = []
    deadline = time.monotonic() + 15
    with pytest.raises(StopIteration):
        while time.monotonic() < deadline:
            for _, batch in part.next_batch():
                if isinstance(batch, ConsumerError):
                    got.append(batch)
                else:
                    got.extend(batch)
    part.close()
    return got
