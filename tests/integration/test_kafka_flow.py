"""The signals flow from the real Kafka-protocol broker (tansu) into the real ClickHouse engine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from dataflows.kafka.admin import ensure_topics
from dataflows.kafka.produce import produce_records
from dataflows.simulator import SimConfig, generate_labeled, write_files
from tests.conftest import query_in_subprocess
from tickcast.app.backfill import run_replay
from tickcast.settings import load_settings
from tickcast.store import Store

START = 1_763_683_200_000
ROOT = Path(__file__).resolve().parents[2]


def _topics(broker: str, partitions: int = 2) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {"TICKCAST_TOPIC_TICKS": f"ticks-{suffix}", "TICKCAST_TOPIC_CANDLES": f"candles-{suffix}"}
    ensure_topics(broker, {t: partitions for t in names.values()})
    return names


def _produce(broker: str, topics: dict[str, str], records: list[dict[str, Any]]) -> None:
    ticks = [r for r in records if "score" in r]
    candles = [r for r in records if "score" not in r]
    # Candles first: a reader that does not merge the two topics by ingest time would
    # see every candle before its ticks.
    produce_records(broker, topics["TICKCAST_TOPIC_CANDLES"], candles)
    produce_records(broker, topics["TICKCAST_TOPIC_TICKS"], ticks)


def test_kafka_replay_exactly_once_rejections_and_same_rows_as_files(
    kafka_broker: str, store: Store, tmp_path: Path, chdb_dir: Path
) -> None:
    cfg = SimConfig(
        symbols=3, hours=2.0, seed=5, start_ms=START, malformed_rate=0.02, duplicate_rate=0.03, late_rate=0.02
    )
    labeled = list(generate_labeled(cfg))
    topics = _topics(kafka_broker)
    _produce(kafka_broker, topics, [r for r, _ in labeled])
    settings = load_settings(TICKCAST_KAFKA_BOOTSTRAP=kafka_broker, MODEL_STORE_DIR=str(tmp_path / "m"), **topics)

    summary = run_replay(settings, kafka=True, store=store, progress=False)
    assert "replayed" in summary
    good_ticks = [r for r, bad in labeled if bad is None and "score" in r]
    on_time = [t for t in good_ticks if t["ingest_ts"] - t["ts"] <= 600_000]
    expected_ids = {t["id"] for t in on_time}
    assert {r["id"] for r in store.rows("SELECT id FROM {db}.sentiment_ticks FINAL")} == expected_ids
    good_candles = [r for r, bad in labeled if bad is None and "open_time" in r]
    assert store.count("candles") == len(good_candles)
    n_bad = sum(bad is not None for _, bad in labeled)
    expected_rejections = n_bad + (len(good_ticks) - len(on_time)) + (len(on_time) - len(expected_ids))
    assert store.count("rejected_records") == expected_rejections
    assert store.count("features") > 300

    tables = ("sentiment_ticks", "candles", "rejected_records", "sentiment_bars", "features", "labels", "predictions")
    counts = {t: store.count(t) for t in tables}
    run_replay(settings, kafka=True, store=store, progress=False)  # the same replay again adds nothing
    assert {t: store.count(t) for t in tables} == counts
    assert store.scalar("SELECT count() FROM {db}.sentiment_ticks") >= counts["sentiment_ticks"]  # rows were re-sent

    # The file path gives the same rows.
    files = tmp_path / "files"
    write_files(cfg, files)
    other = Store(f"chdb://{chdb_dir}", database=store.database + "_files")
    other.migrate()
    try:
        run_replay(settings, inputs=[files], store=other, progress=False)
        assert {t: other.count(t) for t in tables} == counts
        cols = "symbol, toUnixTimestamp64Milli(close_time) t, sent_ema_5m, sent_ema_60m, ret_5, rsi_14"
        a = store.df(f"SELECT {cols} FROM {{db}}.features FINAL ORDER BY symbol, t")
        b = other.df(f"SELECT {cols} FROM {{db}}.features FINAL ORDER BY symbol, t")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    finally:
        other.command(f"DROP DATABASE IF EXISTS {other.database}")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickcast.app.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_killed_mid_replay_then_restarted_loses_and_duplicates_nothing(kafka_broker: str, tmp_path: Path) -> None:
    cfg = SimConfig(symbols=20, hours=24.0, seed=9, start_ms=START)
    records = [r for r, _ in generate_labeled(cfg)]
    topics = _topics(kafka_broker)
    _produce(kafka_broker, topics, records)
    url = f"chdb://{tmp_path / 'ch'}"
    env = {
        **os.environ,
        "TICKCAST_KAFKA_BOOTSTRAP": kafka_broker,
        "TICKCAST_SNAPSHOT_SECONDS": "0.3",
        "TICKCAST_WRITE_FLUSH_MS": "100",
        "TICKCAST_REPLAY_BATCH": "500",  # many small batches, so the kill lands mid-way, between snapshots
        "TICKCAST_LOG_LEVEL": "WARNING",
        **topics,
    }
    args = [
        "replay",
        "--kafka",
        "--store",
        url,
        "--model-dir",
        str(tmp_path / "m"),
        "--recovery-dir",
        str(tmp_path / "recovery"),
        "--no-progress",
    ]

    # The first run shows its progress bar (records taken from the broker); kill it once it is
    # well into the input and has had time to snapshot and write.
    first = _cli([a for a in args if a != "--no-progress"], env)
    total = len(records)
    seen, buffer = 0, b""
    os.set_blocking(first.stdout.fileno(), False)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and seen < 0.2 * total:
        chunk = first.stdout.read() or b""
        buffer = (buffer + chunk)[-4096:]
        # "replay:  20%|██   | 29406/144306 [...]" (a total: the topics' message count), or "replay: 29406rec [...]"
        counts = re.findall(rb"(\d+)/\d+ \[", buffer) or re.findall(rb"replay: (\d+)rec", buffer)
        seen = int(counts[-1]) if counts else seen
        time.sleep(0.05)
    time.sleep(0.4)  # rows (flushed every 100 ms) and a snapshot (every 0.3 s) are written by now
    assert first.poll() is None, "the first run finished before it could be killed; make the input larger"
    first.send_signal(signal.SIGKILL)  # a crash: no flush, no clean shutdown
    first.wait(10)
    partial = query_in_subprocess(url, "SELECT count() AS n FROM {db}.sentiment_ticks FINAL")[0]["n"]

    second = _cli(args, env)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out.decode()[-2000:]

    n_ticks = sum("score" in r for r in records)
    rows = query_in_subprocess(url, "SELECT count() AS n, uniqExact(id) AS u FROM {db}.sentiment_ticks FINAL")[0]
    assert 0 < int(partial) < n_ticks  # the crash really happened mid-way
    assert int(rows["n"]) == int(rows["u"]) == n_ticks  # every tick exactly once
    candles = query_in_subprocess(url, "SELECT count() AS n FROM {db}.candles FINAL")[0]
    assert int(candles["n"]) == sum("open_time" in r for r in records)
    feats = query_in_subprocess(
        url, "SELECT count() AS n, uniqExact(symbol, close_time) AS u FROM {db}.features FINAL"
    )[0]
    assert int(feats["n"]) == int(feats["u"]) > 0
