"""A plain Kafka consumer of JSON values (the API replicas follow the live topics with it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from dataflows.kafka.admin import topic_partition_counts

log = logging.getLogger(__name__)


def consume_json(
    brokers: str,
    topic: str,
    *,
    from_offset: Literal["beginning", "end"] = "beginning",
    poll_s: float = 0.1,
    stop: threading.Event | None = None,
    idle_timeout_s: float | None = None,
    add_config: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Yield decoded JSON values of every partition of `topic` (assign(), no group).

    Waits for the topic to appear. Ends when `stop` is set or, with `idle_timeout_s`,
    after that long without a message. Undecodable values are logged and skipped.
    Partitions added after the start are not followed.
    """
    if from_offset not in ("beginning", "end"):
        raise ValueError(f"from_offset must be 'beginning' or 'end', got {from_offset!r}")
    start = OFFSET_BEGINNING if from_offset == "beginning" else OFFSET_END
    last = time.monotonic()

    def finished() -> bool:
        return (stop is not None and stop.is_set()) or (
            idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s
        )

    while not (n := topic_partition_counts(brokers, [topic], add_config=add_config)[topic]):
        if finished():
            return
        time.sleep(poll_s)
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "tickcast-ignored",
            "enable.auto.commit": False,
            **(add_config or {}),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, i, start) for i in range(n)])
        while not finished():
            for msg in consumer.consume(num_messages=1000, timeout=poll_s):
                error, value = msg.error(), msg.value()
                if error is not None:
                    log.warning("consume_json %s: %s", topic, error.str())
                    continue
                last = time.monotonic()
                try:
                    yield orjson.loads(value if value is not None else b"")
                except orjson.JSONDecodeError:
                    log.warning("consume_json %s: skipping a non-JSON value at offset %s", topic, msg.offset())
    finally:
        consumer.close()
