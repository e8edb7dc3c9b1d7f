"""Kafka topic administration: partition counts and idempotent topic creation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0


def _admin(brokers: str, add_config: dict[str, Any] | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": brokers, **(add_config or {})})


def topic_partition_counts(
    brokers: str, topics: Iterable[str], *, add_config: dict[str, Any] | None = None
) -> dict[str, int]:
    """Partitions per topic; a missing topic counts 0.

    Lists *all* topics rather than asking for each by name: a by-name metadata request
    auto-creates the topic on brokers that allow it (tansu does, with 4 partitions).
    """
    try:
        meta = _admin(brokers, add_config).list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise RuntimeError(f"cannot read topic metadata from Kafka at {brokers!r}: {exc}") from exc
    out = {}
    for topic in topics:
        tm = meta.topics.get(topic)
        out[topic] = 0 if tm is None or tm.error is not None else len(tm.partitions)
    return out


def ensure_topics(
    brokers: str,
    topics: dict[str, int],
    timeout: float = 15,
    *,
    replication_factor: int = 1,
    add_config: dict[str, Any] | None = None,
) -> None:
    """Create the missing topics with the given partition counts (idempotent)."""
    admin = _admin(brokers, add_config)
    have = topic_partition_counts(brokers, topics, add_config=add_config)
    for topic, n in topics.items():
        if have[topic] and have[topic] != n:
            log.warning("topic %s exists with %d partitions, not the %d asked for", topic, have[topic], n)
    missing = [NewTopic(t, n, replication_factor) for t, n in topics.items() if not have[t]]
    if not missing:
        return
    for topic, fut in admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create Kafka topic {topic!r} at {brokers!r}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while not all(topic_partition_counts(brokers, topics, add_config=add_config).values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {sorted(topics)} not visible at {brokers!r} after {timeout}s")
        time.sleep(0.05)
