"""Malformed records in a Kafka replay (real broker, real ClickHouse engine, the `tickcast`
CLI in a subprocess): the replay finishes with exit 0, every valid record is stored, and each
bad one is in `rejected_records` with its reason (issue 15 items 5, 7, 8, 9).

Before: a candle with `"interval": {}` raised a TypeError out of the decoder — exit 1, and
exit 1 again on every resume; a candle dated a year ahead made every later candle of its
symbol "out of order"; a record keyed by another symbol joined that symbol's partition."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from dataflows.kafka.admin import ensure_topics
from dataflows.simulator import SimConfig, generate_labeled
from tests.conftest import query_in_subprocess

START = 1_763_683_200_000
ROOT = Path(__file__).resolve().parents[2]
YEAR = 365 * 86_400_000


def _bad_records(
    ticks: list[dict[str, Any]], candles: list[dict[str, Any]]
) -> list[tuple[str, bytes, bytes, int, str]]:
    """(kind, key, value, message timestamp, expected reason prefix), built from valid neighbours."""
    t, c = ticks[len(ticks) // 2], candles[len(candles) // 2]
    shifted = {**c, "open_time": c["open_time"] + YEAR, "close_time": c["close_time"] + YEAR, "symbol": "BTCUSDT"}
    other = "ETHUSDT" if t["symbol"] != "ETHUSDT" else "BTCUSDT"
    return [
        (
            "candle",
            c["symbol"].encode(),
            orjson.dumps({**c, "interval": {}}),
            c["ingest_ts"],
            "unknown interval an object",
        ),
        (
            "candle",
            c["symbol"].encode(),
            orjson.dumps({**c, "interval": []}),
            c["ingest_ts"],
            "unknown interval an array",
        ),
        ("candle", b"BTCUSDT", orjson.dumps(shifted), c["ingest_ts"], "future: 'close_time'="),
        ("tick", other.encode(), orjson.dumps({**t, "id": "wrong-key"}), t["ingest_ts"], "key_mismatch: the Kafka key"),
        (
            "tick",
            t["symbol"].encode(),
            orjson.dumps({**t, "id": "twice"})[:-1] + f',"symbol":"{other}"}}'.encode(),
            t["ingest_ts"],
            "duplicate_key: 'symbol'",
        ),
        (
            "tick",
            t["symbol"].encode(),
            orjson.dumps({**t, "id": "huge", "meta": {"x": "y" * 70_000}}),
            t["ingest_ts"],
            "too_large",
        ),
        (
            "tick",
            t["symbol"].encode(),
            orjson.dumps({**t, "id": "ahead", "ts": t["ingest_ts"] + 3_600_000}),
            t["ingest_ts"],
            "future: 'ts'=",
        ),
        (
            "tick",
            t["symbol"].encode(),
            b'{"symbol":"' + t["symbol"].encode() + b'","ts":{},"score":[],"provider":true}',
            t["ingest_ts"],
            "'ts' must be",
        ),
    ]


def test_kafka_replay_with_malformed_records_stores_every_valid_one(kafka_broker: str, tmp_path: Path) -> None:
    cfg = SimConfig(symbols=3, hours=1.0, seed=11, start_ms=START)
    records = [r for r, _ in generate_labeled(cfg)]
    ticks = [r for r in records if "score" in r]
    candles = [r for r in records if "open_time" in r]
    bad = _bad_records(ticks, candles)
    suffix = uuid.uuid4().hex[:8]
    topics = {"TICKCAST_TOPIC_TICKS": f"ticks-{suffix}", "TICKCAST_TOPIC_CANDLES": f"candles-{suffix}"}
    ensure_topics(kafka_broker, {t: 2 for t in topics.values()})

    # In ingest order, the bad ones in the middle (keyed like a producer would, or wrongly).
    messages = [
        ("tick" if "score" in r else "candle", r["symbol"].encode(), orjson.dumps(r), r["ingest_ts"]) for r in records
    ]
    middle = len(messages) // 2
    messages[middle:middle] = [m[:4] for m in bad]
    producer = Producer(
        {"bootstrap.servers": kafka_broker, "partitioner": "murmur2_random", "message.max.bytes": 1 << 20}
    )
    for kind, key, value, ts in messages:
        topic = topics["TICKCAST_TOPIC_TICKS" if kind == "tick" else "TICKCAST_TOPIC_CANDLES"]
        producer.produce(topic, value=value, key=key, timestamp=ts)
        producer.poll(0)
    assert producer.flush(30) == 0

    url = f"chdb://{tmp_path / 'ch'}"
    env = {**os.environ, "TICKCAST_KAFKA_BOOTSTRAP": kafka_broker, "TICKCAST_LOG_LEVEL": "WARNING", **topics}
    args = ["replay", "--kafka", "--store", url, "--model-dir", str(tmp_path / "m"), "--no-progress", "--no-model"]
    proc = subprocess.run(
        [sys.executable, "-m", "tickcast.app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    stored_ticks = query_in_subprocess(url, "SELECT id FROM {db}.sentiment_ticks FINAL")
    assert {r["id"] for r in stored_ticks} == {t["id"] for t in ticks}
    stored_candles = query_in_subprocess(
        url, "SELECT symbol, toUnixTimestamp64Milli(close_time) AS t FROM {db}.candles FINAL"
    )
    assert sorted((r["symbol"], int(r["t"])) for r in stored_candles) == sorted(
        (c["symbol"], c["close_time"]) for c in candles
    )
    rejected = query_in_subprocess(url, "SELECT reason, source, length(payload) AS n FROM {db}.rejected_records FINAL")
    reasons = sorted(r["reason"] for r in rejected)
    assert len(reasons) == len(bad), reasons
    for *_, prefix in bad:
        assert sum(r.startswith(prefix) for r in reasons) == 1, (prefix, reasons)
    assert all(r["source"].startswith("kafka:") for r in rejected)
    assert max(int(r["n"]) for r in rejected) == 65_536  # the 70 kB record is kept, capped

    again = subprocess.run(
        [sys.executable, "-m", "tickcast.app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]  # no crash loop on a second run either
    assert query_in_subprocess(url, "SELECT count() AS n FROM {db}.rejected_records FINAL")[0]["n"] in (
        len(bad),
        str(len(bad)),
    )
