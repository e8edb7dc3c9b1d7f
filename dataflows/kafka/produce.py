"""Checked Kafka producing: every send waits for the broker's acknowledgements and raises
`KafkaDeliveryError` naming what failed, instead of losing messages quietly.

- `produce_records`: bulk-produce JSON records once (tests, backfill seeding).
- `CheckedProducer`: one long-lived producer shared by many callers, each send waited for
  within a bound (the API replicas' ingest `KafkaIngest`, control records, the fan-out).
- `KafkaJsonSink`: a Bytewax sink that flushes and checks per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer

from dataflows.kafka.admin import METADATA_TIMEOUT_S
from tickcast.inbox import RETRY_AFTER_S, IngestRefused
from tickcast.settings import Settings


class KafkaDeliveryError(RuntimeError):
    """Some produced messages were not acknowledged by the broker."""


class _DeliveryTracker:
    """Delivery-callback bookkeeping shared by `produce_records` and the sink."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = f"{msg.topic()}: {err.str()}"

    def check(self, producer: Producer, flush_timeout: float, what: str) -> None:
        left = producer.flush(flush_timeout)
        if left:
            raise KafkaDeliveryError(f"{what}: {left} messages still undelivered after {flush_timeout}s")
        if self.failed:
            failed, first = self.failed, self.first_error
            self.failed, self.first_error = 0, None
            raise KafkaDeliveryError(f"{what}: {failed} messages failed delivery; first error: {first}")


def _producer(brokers: str, add_config: dict[str, Any] | None) -> Producer:
    return Producer(
        {
            "bootstrap.servers": brokers,
            # Same as Java clients, so both topics (and foreign producers) agree on key -> partition.
            "partitioner": "murmur2_random",
            "linger.ms": 10,
            "batch.num.messages": 10_000,
            **(add_config or {}),
        }
    )


def _produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None,
    ts: int | None,
    cb: Any,
    partition: int | None = None,
    deadline: float | None = None,
) -> None:
    extra: dict[str, Any] = {}
    if ts is not None:
        extra["timestamp"] = ts
    if partition is not None:
        extra["partition"] = partition
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=cb, **extra)
            return
        except BufferError:  # local queue full: let deliveries drain, then retry
            if deadline is not None and time.monotonic() > deadline:
                raise KafkaDeliveryError(f"producing to {topic!r}: the local queue stayed full") from None
            producer.poll(0.05)


def _key_bytes(key: Any) -> bytes | None:
    if key is None:
        return None
    return key if isinstance(key, bytes) else str(key).encode()


def _stamp(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def produce_records(
    brokers: str,
    topic: str,
    records: Iterable[dict[str, Any]],
    *,
    key_field: str = "symbol",
    ts_field: str = "ingest_ts",
    flush_timeout: float = 30,
    add_config: dict[str, Any] | None = None,
) -> int:
    """JSON-encode and produce `records` (key = record[key_field], message timestamp =
    record[ts_field] when present); wait for every delivery. Returns the count produced.

    Raises KafkaDeliveryError naming the failure count and the first error.
    """
    producer = _producer(brokers, add_config)
    tracker = _DeliveryTracker()
    n = 0
    for rec in records:
        _produce(producer, topic, orjson.dumps(rec), _key_bytes(rec.get(key_field)), _stamp(rec.get(ts_field)), tracker)
        n += 1
        if n % 5_000 == 0:
            producer.poll(0)
    tracker.check(producer, flush_timeout, f"producing to {topic!r} at {brokers!r}")
    return n


class _Sent:
    """Delivery bookkeeping of one `CheckedProducer.send` call (its callbacks may run on any
    thread that polls the shared producer)."""

    __slots__ = ("delivered", "failed", "first_error")

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{msg.topic()}: {err.str()}"


class CheckedProducer:
    """One long-lived librdkafka producer whose sends are checked: `send` returns once every
    message of that call is acknowledged by the broker, or raises `KafkaDeliveryError` within
    `timeout_s` (librdkafka's own `message.timeout.ms` is set to it too, so a message the
    caller was told failed is not delivered later). Thread-safe: API requests share it, each
    waits for its own messages only.

    A librdkafka producer costs a broker connection and a thread; one per request (what
    ingest did before) also paid the connection set-up on every POST."""

    def __init__(self, brokers: str, *, timeout_s: float = 30.0, add_config: dict[str, Any] | None = None) -> None:
        self.brokers = brokers
        self.timeout_s = timeout_s
        self.producer = _producer(brokers, {"message.timeout.ms": max(1, int(timeout_s * 1000)), **(add_config or {})})

    def send(self, messages: Iterable[tuple[str, bytes, bytes | None, int | None, int | None]], what: str) -> int:
        """Produce `(topic, value, key, timestamp_ms, partition)` messages (None: none / the
        partitioner's choice) and wait for their delivery. Returns how many were sent."""
        deadline = time.monotonic() + self.timeout_s
        sent = _Sent()
        n = 0
        for topic, value, key, ts, partition in messages:
            _produce(self.producer, topic, value, key, ts, sent, partition, deadline)
            n += 1
            if n % 5_000 == 0:  # serve delivery reports as a big send goes
                self.producer.poll(0)
        while sent.delivered + sent.failed < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaDeliveryError(
                    f"{what}: {n - sent.delivered - sent.failed} of {n} message(s) not acknowledged by Kafka at "
                    f"{self.brokers!r} within {self.timeout_s:g}s"
                )
            self.producer.poll(min(left, 0.05))
        if sent.failed:
            raise KafkaDeliveryError(
                f"{what}: {sent.failed} of {n} message(s) failed delivery; first error: {sent.first_error}"
            )
        return n

    def partitions(self, topic: str) -> int:
        """The topic's partition count (0: missing), from a metadata request for all topics
        (a by-name request auto-creates the topic on brokers that allow it)."""
        try:
            meta = self.producer.list_topics(timeout=min(self.timeout_s, METADATA_TIMEOUT_S))
        except KafkaException as exc:
            raise KafkaDeliveryError(f"cannot read topic metadata from Kafka at {self.brokers!r}: {exc}") from exc
        tm = meta.topics.get(topic)
        return 0 if tm is None or tm.error is not None else len(tm.partitions)

    def close(self) -> None:
        self.producer.flush(self.timeout_s)


def record_messages(
    topic: str, records: Iterable[dict[str, Any]], *, key_field: str = "symbol", ts_field: str = "ingest_ts"
) -> Iterator[tuple[str, bytes, bytes | None, int | None, None]]:
    """`CheckedProducer.send` messages of JSON records: key = record[key_field], message
    timestamp = record[ts_field] (the contract of the pair source, see pair_source.py)."""
    for rec in records:
        yield topic, orjson.dumps(rec), _key_bytes(rec.get(key_field)), _stamp(rec.get(ts_field)), None


class KafkaIngest:
    """The API replicas' ingest (`AppContext.ingest`): validated records go to the input topics,
    keyed by symbol and stamped with their `ingest_ts`; a control record goes to every
    partition of the ticks topic, so every partition's gate sees it. One long-lived checked
    producer; a request whose records Kafka has not acknowledged within
    `KAFKA_INGEST_TIMEOUT_S` is refused (`IngestRefused` -> the API answers 503 with the
    reason), never answered 202 into nothing."""

    def __init__(self, settings: Settings) -> None:
        self.ticks_topic = settings.TICKCAST_TOPIC_TICKS
        self.candles_topic = settings.TICKCAST_TOPIC_CANDLES
        self.producer = CheckedProducer(
            settings.TICKCAST_KAFKA_BOOTSTRAP or "", timeout_s=settings.KAFKA_INGEST_TIMEOUT_S
        )

    def __call__(self, records: list[dict[str, Any]]) -> None:
        ticks = [r for r in records if "score" in r]
        candles = [r for r in records if "open_time" in r]
        controls = [r for r in records if "_control" in r]
        messages: list[tuple[str, bytes, bytes | None, int | None, int | None]] = [
            *record_messages(self.ticks_topic, ticks),
            *record_messages(self.candles_topic, candles),
        ]
        try:
            if controls:
                partitions = max(1, self.producer.partitions(self.ticks_topic))
                messages += [
                    (self.ticks_topic, orjson.dumps(control), None, None, partition)
                    for partition in range(partitions)
                    for control in controls
                ]
            self.producer.send(messages, f"ingest of {len(records)} record(s)")
        except KafkaDeliveryError as exc:
            raise IngestRefused(
                f"Kafka did not take these records ({exc}); send them again once the broker is reachable "
                "(a repeat of records that did arrive is recorded as a duplicate)",
                reason="broker_unavailable",
                retry_after_s=RETRY_AFTER_S,
            ) from exc

    def close(self) -> None:
        self.producer.close()


# --------------------------------------------------------------------------- sink


class _ProducerPartition(StatelessSinkPartition[Any]):
    def __init__(self, sink: KafkaJsonSink) -> None:
        self._sink = sink
        self._producer = _producer(sink.brokers, sink.add_config)
        self._tracker = _DeliveryTracker()

    def write_batch(self, items: list[Any]) -> None:
        sink, topic_for = self._sink, self._sink.topic_for
        for item in items:
            topic = topic_for if isinstance(topic_for, str) else topic_for(item)
            key = _key_bytes(sink.key(item)) if sink.key else None
            ts = sink.timestamp(item) if sink.timestamp else None
            _produce(self._producer, topic, sink.value(item), key, ts, self._tracker)
        self._tracker.check(self._producer, sink.flush_timeout, "KafkaJsonSink")

    def close(self) -> None:
        self._producer.flush(self._sink.flush_timeout)


class KafkaJsonSink(DynamicSink[Any]):
    """Produces every item (topic from `topic_for`, key, value bytes, optional message
    timestamp) and flushes per batch; unlike Bytewax's KafkaSink, a failed delivery
    raises KafkaDeliveryError (which stops the flow) instead of vanishing."""

    def __init__(
        self,
        brokers: str,
        topic_for: Callable[[Any], str] | str,
        *,
        key: Callable[[Any], Any] | None = None,
        value: Callable[[Any], bytes] = orjson.dumps,
        timestamp: Callable[[Any], int | None] | None = None,
        flush_timeout: float = 30,
        add_config: dict[str, Any] | None = None,
    ) -> None:
        self.brokers = brokers
        self.topic_for = topic_for
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.flush_timeout = flush_timeout
        self.add_config = dict(add_config or {})

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(self)
