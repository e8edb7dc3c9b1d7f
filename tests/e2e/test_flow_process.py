"""`tickcast flow` (distributed mode) as a process: tails the topics, writes ClickHouse,
fans predictions out to Kafka, serves its own /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from dataflows.kafka.admin import ensure_topics
from dataflows.kafka.consume import consume_json
from dataflows.kafka.produce import produce_records
from dataflows.simulator import SimConfig, generate
from tests.conftest import free_port, query_in_subprocess
from tickcast.bus import STREAMS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
START = 1_763_683_200_000


def test_flow_process_tails_kafka_and_fans_out(kafka_broker: str, tmp_path: Path) -> None:
    s = uuid.uuid4().hex[:6]
    topics = {
        "TICKCAST_TOPIC_TICKS": f"t-{s}",
        "TICKCAST_TOPIC_CANDLES": f"c-{s}",
        **{f"TICKCAST_TOPIC_{stream.upper()}": f"{stream}-{s}" for stream in STREAMS},  # one per live stream
    }
    ensure_topics(kafka_broker, {topics["TICKCAST_TOPIC_TICKS"]: 2, topics["TICKCAST_TOPIC_CANDLES"]: 2})
    records = list(generate(SimConfig(symbols=3, hours=0.5, seed=2, start_ms=START)))
    produce_records(kafka_broker, topics["TICKCAST_TOPIC_CANDLES"], [r for r in records if "open_time" in r])
    produce_records(kafka_broker, topics["TICKCAST_TOPIC_TICKS"], [r for r in records if "score" in r])
    metrics_port = free_port()
    url = f"chdb://{tmp_path / 'ch'}"
    env = {
        **os.environ,
        **topics,
        "TICKCAST_KAFKA_BOOTSTRAP": kafka_broker,
        "TICKCAST_LOG_LEVEL": "WARNING",
        "TICKCAST_FLOW_METRICS_PORT": str(metrics_port),
        "TICKCAST_SNAPSHOT_SECONDS": "0.5",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickcast.app.cli",
            "flow",
            "--store",
            url,
            "--model-dir",
            str(tmp_path / "m"),
            "-r",
            str(tmp_path / "recovery"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        n_candles = sum("open_time" in r for r in records)
        preds = []
        deadline = time.time() + 60
        for msg in consume_json(kafka_broker, topics["TICKCAST_TOPIC_PREDICTIONS"], idle_timeout_s=30):
            preds.append(msg)
            if len(preds) >= n_candles - 3 * 2 or time.time() > deadline:
                break
        assert len(preds) >= n_candles - 3 * 2  # all but the last candles (still waiting for the join)
        assert {p["stream"] for p in preds} == {"predictions"} and all(p["id"] > 0 for p in preds)
        ids = [p["id"] for p in preds]
        assert len(set(ids)) == len(ids)
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "feature_sentiment_join_attempts_total" in text and "sentiment_ingest_total" in text
        # Rows are batched for up to TICKCAST_WRITE_FLUSH_MS (a SIGTERM before that loses nothing:
        # the restart resumes from the last snapshot, see test_kafka_flow); let them land.
        time.sleep(4.0)  # and the idle-release of the last candles (idle_release_ms = 2 s)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    tables = ("sentiment_ticks", "candles", "features", "predictions")
    counts = {
        k: int(v)
        for k, v in query_in_subprocess(
            url, "SELECT " + ", ".join(f"(SELECT count() FROM {{db}}.{t} FINAL) AS {t}" for t in tables)
        )[0].items()
    }
    assert counts["candles"] == sum("open_time" in r for r in records)
    assert counts["sentiment_ticks"] == len({r["id"] for r in records if "score" in r})
    assert counts["predictions"] == counts["features"] >= len(preds)
