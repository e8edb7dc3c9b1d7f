"""Distributed mode plumbing through the real broker: the flow's events reach every API
replica's bus with the flow's ids; replica ingest lands on the input topics."""

from __future__ import annotations

import threading
import time
import uuid

from dataflows.kafka_io import consume_json, ensure_topics
from tickcast.app.embedded import KafkaEventPublisher, follow_kafka_events, kafka_ingest
from tickcast.bus import Event, IdClock, LocalBus
from tickcast.settings import load_settings


def _settings(broker: str):  # noqa: ANN202
    s = uuid.uuid4().hex[:6]
    names = {
        "TICKCAST_TOPIC_TICKS": f"ticks-{s}",
        "TICKCAST_TOPIC_CANDLES": f"candles-{s}",
        "TICKCAST_TOPIC_PREDICTIONS": f"preds-{s}",
        "TICKCAST_TOPIC_CALIBRATION": f"calib-{s}",
    }
    ensure_topics(
        broker,
        {
            names["TICKCAST_TOPIC_TICKS"]: 3,
            names["TICKCAST_TOPIC_CANDLES"]: 3,
            names["TICKCAST_TOPIC_PREDICTIONS"]: 1,
            names["TICKCAST_TOPIC_CALIBRATION"]: 1,
        },
    )
    return load_settings(TICKCAST_KAFKA_BOOTSTRAP=broker, **names)


def test_flow_events_reach_every_replica_with_the_same_ids(kafka_broker: str) -> None:
    settings = _settings(kafka_broker)
    publisher = KafkaEventPublisher(settings)
    ids = IdClock()
    sent = [
        Event("predictions", ids.next(), {"prob": 0.6}, "BTCUSDT", 1),
        Event("events", ids.next(), {"kind": "model_switch"}, "ETHUSDT", 2),
        Event("calibration", ids.next(), {"ece": 0.03}, "XRPUSDT", 3),
    ]
    for event in sent:
        publisher.publish(event)
    publisher.producer.flush(10)
    stop = threading.Event()
    replicas = [(LocalBus(), IdClock()) for _ in range(2)]
    for bus, replica_ids in replicas:
        follow_kafka_events(settings, bus, replica_ids, from_offset="beginning", stop=stop)
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
    ingest = kafka_ingest(settings)
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
