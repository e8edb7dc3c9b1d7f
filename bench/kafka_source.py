"""Throughput of the paired Kafka source's partition (`_PairPartition.next_batch`) draining
a backlog, against a raw `Consumer.consume` loop (the floor) on the same topic.

Produces `--messages` ~150-byte JSON ticks to one partition on a local tansu broker, then
drains them with `tail=False` and `batch_size` 50 000 until StopIteration; best of
`--repeat` runs. `--tuned-gc` applies the collector settings of replays (tickcast.gc_tuning):
with Python's defaults, the tuples built per message trigger collections that scan the
whole backlog. `--paired` splits the messages over two topics (ticks + candles), so the
merge of two TPs runs too. `--impl FILE` times another copy of `dataflows/kafka/pair_source.py`
(e.g. the previous version, for a before/after).

    python bench/kafka_source.py [--messages 400000] [--repeat 3] [--paired] [--tuned-gc] [--impl FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _broker import tansu  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

import dataflows.kafka.pair_source  # noqa: E402
from dataflows.kafka.admin import ensure_topics  # noqa: E402

START = 1_763_683_200_000
BATCH = 50_000


def load_impl(path: str | None) -> ModuleType:
    if path is None:
        return dataflows.kafka.pair_source
    spec = importlib.util.spec_from_file_location("pair_source_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def produce(broker: str, topics: list[str], n: int) -> None:
    """Message i goes to topics[i % len(topics)], stamped with its ingest_ts (increasing)."""
    producer = Producer(
        {
            "bootstrap.servers": broker,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    scores = np.round(np.random.default_rng(0).uniform(-1, 1, n), 4)
    for i in range(n):
        ts = START + i * 15
        rec = {
            "symbol": f"S{i % 1000:04d}USDT",
            "ts": ts,
            "score": float(scores[i]),
            "provider": "newsapi",
            "id": f"t{i}",
            "ingest_ts": ts + 150,
            "pad": "x" * 20,
        }
        while True:
            try:
                producer.produce(topics[i % len(topics)], orjson.dumps(rec), partition=0, timestamp=ts + 150)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def drain_partition(mod: ModuleType, broker: str, topics: list[str], add_config: dict[str, Any]) -> tuple[int, float]:
    other = topics[1] if len(topics) > 1 else f"absent-{uuid.uuid4().hex[:6]}"
    src = mod.KafkaPairSource(broker, topics[0], other, tail=False, batch_size=BATCH, add_config=add_config)
    part = src.build_part("in", "p0", None)
    n = 0
    t = time.perf_counter()
    try:
        while True:
            for _, batch in part.next_batch():
                n += len(batch)
    except StopIteration:
        pass
    elapsed = time.perf_counter() - t
    part.close()
    return n, elapsed


def drain_raw(broker: str, topics: list[str], add_config: dict[str, Any]) -> tuple[int, float]:
    # no offset store or commits, as in the pair source: storing each offset costs librdkafka a lock per message
    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "bench",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            **add_config,
        }
    )
    for t in topics:  # connect before the clock starts, as building the pair partition does
        c.get_watermark_offsets(TopicPartition(t, 0), timeout=10, cached=False)
    c.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in topics])
    n, eof = 0, set()
    t = time.perf_counter()
    while len(eof) < len(topics):
        msgs = c.consume(BATCH, 0.0)
        errors = [m.error() for m in msgs]
        bad = [(m, e) for m, e in zip(msgs, errors) if e is not None]
        n += len(msgs) - len(bad)
        eof.update(m.topic() for m, e in bad if e.code() == KafkaError._PARTITION_EOF)
    elapsed = time.perf_counter() - t
    c.close()
    return n, elapsed


FAST_FETCH = {
    "fetch.message.max.bytes": 16 << 20,
    "fetch.max.bytes": 64 << 20,
    "queued.min.messages": 1_000_000,
    "fetch.wait.max.ms": 10,
    "queued.max.messages.kbytes": 1 << 20,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--paired", action="store_true")
    ap.add_argument("--tuned-gc", action="store_true", help="gc settings of replays (tickcast.gc_tuning)")
    ap.add_argument("--impl", help="path of a pair_source.py to time instead of dataflows/kafka/pair_source.py")
    args = ap.parse_args()
    mod = load_impl(args.impl)
    tag = uuid.uuid4().hex[:8]
    topics = [f"ticks-{tag}", f"candles-{tag}"] if args.paired else [f"ticks-{tag}"]
    if args.tuned_gc:
        from tickcast.gc_tuning import tune_gc

        tune_gc()
    with tansu() as broker:
        ensure_topics(broker, {t: 1 for t in topics})
        produce(broker, topics, args.messages)
        size = len(
            orjson.dumps(
                {
                    "symbol": "S0000USDT",
                    "ts": START,
                    "score": 0.1234,
                    "provider": "newsapi",
                    "id": "t123456",
                    "ingest_ts": START,
                    "pad": "x" * 20,
                }
            )
        )
        print(
            f"{args.messages} messages of ~{size} B on {len(topics)} topic(s), impl={args.impl or 'dataflows'}, "
            f"gc={'tuned' if args.tuned_gc else 'default'}"
        )
        runs = {
            "raw consume, default config": lambda: drain_raw(broker, topics, {}),
            "raw consume, fast fetch config": lambda: drain_raw(broker, topics, FAST_FETCH),
            "pair partition next_batch": lambda: drain_partition(mod, broker, topics, {}),
            "pair partition, fast fetch config": lambda: drain_partition(mod, broker, topics, FAST_FETCH),
        }
        for name, run in runs.items():
            best = 0.0
            for _ in range(args.repeat):
                n, elapsed = run()
                assert n == args.messages, f"{name}: read {n} of {args.messages}"
                best = max(best, n / elapsed)
            print(f"  {name:34s} {best / 1e3:8.0f}k msg/s (best of {args.repeat})")


if __name__ == "__main__":
    main()
