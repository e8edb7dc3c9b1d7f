"""Distributed mode plumbing through the real broker: the flow's events reach every API
replica's bus with the flow's ids; replica ingest lands on the input topics."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest

from dataflows.kafka.admin import ensure_topics
from dataflows.kafka.consume import consume_json
from dataflows.kafka.fanout import KafkaEventPublisher, ensure_live_topics, follow_live_topics
from dataflows.kafka.produce import KafkaDeliveryError, KafkaIngest
from tickcast.bus import STREAMS, Event, IdClock, LocalBus
from tickcast.inbox import IngestRefused
from tickcast.settings import load_settings


def _settings(broker: str):  # noqa: ANN202
    s = uuid.uuid4().hex[:6]
    names = {
        "TICKCAST_TOPIC_TICKS": f"ticks-{s}",
        "TICKCAST_TOPIC_CANDLES": f"candles-{s}",
        **{f"TICKCAST_TOPIC_{stream.upper()}": f"{stream}-{s}" for stream in STREAMS},
    }
    ensure_topics(broker, {names["TICKCAST_TOPIC_TICKS"]: 3, names["TICKCAST_TOPIC_CANDLES"]: 3})
    settings = load_settings(TICKCAST_KAFKA_BOOTSTRAP=broker, **names)
    ensure_live_topics(settings)
    return settings


def test_flow_events_reach_every_replica_with_the_same_ids(kafka_broker: str) -> None:
    settings = _settings(kafka_broker)
    publisher = KafkaEventPublisher(settings)
    ids = IdClock()
    sent = [
        Event("predictions", ids.next(), {"prob": 0.6}, "BTCUSDT", 1),
        Event("events", ids.next(), {"kind": "model_switch"}, "ETHUSDT", 2),
        Event("calibration", ids.next(), {"ece": 0.03}, "XRPUSDT", 3),
        Event("sentiment", ids.next(), {"kind": "tick"}, "BTCUSDT", 4),
        Event("trading", ids.next(), {"kind": "equity"}, "SOLUSDT", 5),
    ]
    publisher.publish(sent[0])  # one at a time, and a batch: both wait for the broker's acknowledgements
    publisher.publish_many(sent[1:])
    # one topic per stream: each stream's events are on its own topic, and only there
    for event in sent:
        on_topic = list(consume_json(kafka_broker, settings.live_topics[event.stream], idle_timeout_s=2))
        assert [(m["stream"], m["id"]) for m in on_topic] == [(event.stream, event.id)]
    stop = threading.Event()
    replicas = [(LocalBus(), IdClock()) for _ in range(2)]
    for bus, replica_ids in replicas:
        follow_live_topics(settings, bus, replica_ids, from_offset="beginning", stop=stop)
    try:
        deadline = time.time() + 20
        for bus, replica_ids in replicas:
            for event in sent:
                while bus.latest(event.stream, event.symbol or "") is None and time.time() < deadline:
                    time.sleep(0.05)
                got = bus.latest(event.stream, event.symbol or "")
                assert got is not None and (got.id, got.data) == (event.id, event.data)
            # the replica's own ids continue after the flow's (no id goes backwards on resume)
            assert replica_ids.next() > sent[-1].id
    finally:
        stop.set()


def test_replica_ingest_produces_records_and_controls_reach_every_partition(kafka_broker: str) -> None:
    settings = _settings(kafka_broker)
    ingest = KafkaIngest(settings)
    tick = {
        "symbol": "BTCUSDT",
        "ts": 1_763_683_200_000,
        "score": 0.1,
        "provider": "newsapi",
        "ingest_ts": 1_763_683_200_100,
    }
    candle = {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "open_time": 1_763_683_140_000,
        "close_time": 1_763_683_200_000,
        "open": 1,
        "high": 1,
        "low": 1,
        "close": 1,
        "volume": 1,
        "ingest_ts": 1_763_683_200_500,
    }
    ingest([tick, candle, {"_control": "enable_provider", "provider": "newsapi"}])
    ticks = list(consume_json(kafka_broker, settings.TICKCAST_TOPIC_TICKS, idle_timeout_s=3))
    candles = list(consume_json(kafka_broker, settings.TICKCAST_TOPIC_CANDLES, idle_timeout_s=3))
    assert candles == [candle]
    assert ticks.count(tick) == 1
    assert ticks.count({"_control": "enable_provider", "provider": "newsapi"}) == 3  # one per partition


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_replica_ingest_without_a_broker_is_refused_within_the_timeout() -> None:
    """Kafka unreachable: the POST's records are refused (-> 503 with the reason) after
    KAFKA_INGEST_TIMEOUT_S, never answered 202 into nothing."""
    settings = load_settings(TICKCAST_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}", KAFKA_INGEST_TIMEOUT_S=1.0)
    ingest = KafkaIngest(settings)
    tick = {"symbol": "BTCUSDT", "ts": 1_763_683_200_000, "score": 0.1, "provider": "newsapi", "ingest_ts": 1}
    started = time.monotonic()
    with pytest.raises(IngestRefused) as refused:
        ingest([tick])
    assert time.monotonic() - started < 5
    assert refused.value.reason == "broker_unavailable" and "Kafka did not take" in str(refused.value)
    with pytest.raises(IngestRefused):  # controls too (they need the partition count first)
        ingest([{"_control": "enable_provider", "provider": "newsapi"}])


def test_the_publisher_raises_when_the_broker_does_not_acknowledge() -> None:
    settings = load_settings(TICKCAST_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}")
    publisher = KafkaEventPublisher(settings, timeout_s=1.0)
    # Either the wait for acknowledgements ends first ("not acknowledged") or librdkafka's own
    # message timeout does ("failed delivery ... Message timed out"): both are the refusal.
    with pytest.raises(KafkaDeliveryError, match="not acknowledged|failed delivery"):
        publisher.publish_many([Event("predictions", 1, {"prob": 0.5}, "BTCUSDT", 1)])
