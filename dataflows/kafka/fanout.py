"""The live fan-out of distributed mode: the flow publishes its live events to Kafka, one
topic per stream (`Settings.live_topics`), and every API replica follows all of them
(`follow_live_topics`) into its own in-process bus, with the flow's event ids.

`KafkaEventPublisher` is an implementation of the bus's publishing side (`publish`,
`publish_many`, as `tickcast.bus.LocalBus`): a batch is published with one checked send,
so a message the broker did not acknowledge raises `KafkaDeliveryError` (the live sink's
writer then stops the flow, which resumes from its recovery store) instead of vanishing.
The events are already in `live_events` when they are published, so a replica's SSE
client that missed some resumes from ClickHouse with Last-Event-ID.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Literal

import orjson

from dataflows.kafka.admin import ensure_topics
from dataflows.kafka.consume import consume_json
from dataflows.kafka.produce import CheckedProducer
from tickcast.bus import STREAMS, Event, IdClock, LocalBus
from tickcast.settings import Settings


def event_message(event: Event) -> bytes:
    """The JSON value of an event on its topic (what `event_from_message` reads back)."""
    return orjson.dumps(
        {"stream": event.stream, "id": event.id, "symbol": event.symbol, "ts": event.ts, "data": event.data}
    )


def event_from_message(msg: dict[str, Any]) -> Event:
    return Event(msg["stream"], int(msg["id"]), msg["data"], msg.get("symbol"), int(msg.get("ts") or 0))


class KafkaEventPublisher:
    """Publishes live events to their stream's topic (key: the symbol), each batch checked.

    An `EventPublisher` (tickcast.bus) that holds nothing unstored (`holds_unstored` False):
    the replicas resume from ClickHouse only, so the event sink stores each batch before
    publishing it."""

    holds_unstored = False

    def __init__(self, settings: Settings, *, timeout_s: float = 30.0) -> None:
        self.topics = settings.live_topics
        missing = set(STREAMS) - self.topics.keys()
        if missing:  # a stream without a topic would have nowhere to go
            raise ValueError(f"no live topic for stream(s) {sorted(missing)}")
        self.producer = CheckedProducer(settings.TICKCAST_KAFKA_BOOTSTRAP or "", timeout_s=timeout_s)

    def publish(self, event: Event) -> None:
        self.publish_many((event,))

    def publish_many(self, events: Iterable[Event]) -> None:
        topics = self.topics
        self.producer.send(
            ((topics[e.stream], event_message(e), (e.symbol or "").encode(), None, None) for e in events),
            "live events",
        )

    def publish_unstored(self, events: list[Event]) -> None:
        self.publish_many(events)  # nothing is held; the sink does not call it (holds_unstored)

    def mark_stored(self, events: Iterable[Event]) -> None:
        return None

    def close(self) -> None:
        self.producer.close()


def ensure_live_topics(settings: Settings, partitions: int = 1) -> None:
    """Create the live topics that are missing (the flow process, at start; compose's
    kafka-init creates them beforehand where brokers refuse auto-creation)."""
    ensure_topics(settings.TICKCAST_KAFKA_BOOTSTRAP or "", {t: partitions for t in settings.live_topics.values()})


def follow_live_topics(
    settings: Settings,
    bus: LocalBus,
    ids: IdClock,
    *,
    from_offset: Literal["beginning", "end"] = "end",
    stop: threading.Event | None = None,
) -> list[threading.Thread]:
    """API replica side of the fan-out: one thread per live topic consumes it and republishes
    the events, with the flow's ids, on the replica's own bus."""
    brokers = settings.TICKCAST_KAFKA_BOOTSTRAP or ""

    def follow(topic: str) -> None:
        for msg in consume_json(brokers, topic, from_offset=from_offset, stop=stop):
            ids.observe(int(msg["id"]))
            bus.publish(event_from_message(msg))

    threads = []
    for topic in sorted(set(settings.live_topics.values())):
        thread = threading.Thread(target=follow, args=(topic,), daemon=True, name=f"follow-{topic}")
        thread.start()
        threads.append(thread)
    return threads
