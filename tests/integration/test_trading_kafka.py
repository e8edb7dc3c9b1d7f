"""Trading on a Kafka replay (real broker, two partitions racing): a replay killed with SIGKILL
and resumed from its recovery store writes exactly the trading rows of an uninterrupted
replay, and a file replay of the same input writes them too."""

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

from dataflows.kafka.admin import ensure_topics
from dataflows.kafka.produce import produce_records
from dataflows.simulator import SimConfig, generate, write_files
from tests.conftest import query_in_subprocess
from tickcast.app.backtest import TRADING_TABLES

START = 1_763_683_200_000
ROOT = Path(__file__).resolve().parents[2]
# the baseline trades here (no model to train): thresholds around its rolling base rates
TRADING_ENV = {
    "TRADING_TRADE_BASELINE": "true",
    "TRADING_ENTRY_THRESHOLD": "0.53",
    "TRADING_EXIT_THRESHOLD": "0.5",
    "TRADING_WARMUP_CANDLES": "20",
    "RISK_MAX_CONCURRENT_POSITIONS": "4",  # the cross-symbol guards matter here
    "RISK_MAX_DRAWDOWN": "0.004",
    "RISK_DAILY_LOSS_CAP": "0.003",
    "LIVE_TRADE_BASE_SIZE": "500",
    "RISK_ATR_STOP_MULT": "1.0",
}


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickcast.app.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def trading_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    return {
        table: query_in_subprocess(url, f"SELECT * FROM {{db}}.{table} FINAL ORDER BY account, {key}")
        for table, key in TRADING_TABLES.items()
    }


def test_sigkill_during_a_kafka_replay_with_trading_then_resume_gives_the_uninterrupted_rows(
    kafka_broker: str, tmp_path: Path
) -> None:
    cfg = SimConfig(symbols=12, hours=14.0, seed=13, start_ms=START)
    records = list(generate(cfg))
    suffix = uuid.uuid4().hex[:8]
    topics = {"TICKCAST_TOPIC_TICKS": f"ticks-{suffix}", "TICKCAST_TOPIC_CANDLES": f"candles-{suffix}"}
    ensure_topics(kafka_broker, {t: 2 for t in topics.values()})
    produce_records(kafka_broker, topics["TICKCAST_TOPIC_CANDLES"], [r for r in records if "score" not in r])
    produce_records(kafka_broker, topics["TICKCAST_TOPIC_TICKS"], [r for r in records if "score" in r])
    env = {
        **os.environ,
        "TICKCAST_KAFKA_BOOTSTRAP": kafka_broker,
        "TICKCAST_SNAPSHOT_SECONDS": "0.3",
        "TICKCAST_WRITE_FLUSH_MS": "100",
        "TICKCAST_LOG_LEVEL": "WARNING",
        "MODEL_STORE_DIR": str(tmp_path / "m"),
        **TRADING_ENV,
        **topics,
    }

    def replay(store: str, *extra: str) -> list[str]:
        return ["replay", "--store", f"chdb://{tmp_path / store}", "--no-progress", *extra]

    whole = cli(replay("whole", "--kafka"), {**env, "TICKCAST_REPLAY_BATCH": "5000"})
    out, _ = whole.communicate(timeout=900)
    assert whole.returncode == 0, out.decode()[-2000:]

    killed_args = replay("killed", "--kafka", "--recovery-dir", str(tmp_path / "recovery"))
    first = cli([a for a in killed_args if a != "--no-progress"], {**env, "TICKCAST_REPLAY_BATCH": "500"})
    seen, buffer = 0, b""
    os.set_blocking(first.stdout.fileno(), False)
    deadline = time.time() + 600
    while (
        time.time() < deadline and first.poll() is None and seen < 0.12 * len(records)
    ):  # the bar counts every partition, with the broker's total when it knows it
        buffer = (buffer + (first.stdout.read() or b""))[-4096:]
        counts = re.findall(rb"(\d+)/\d+ \[", buffer) or re.findall(rb"replay: (\d+)rec", buffer)
        seen = int(counts[-1]) if counts else seen
        time.sleep(0.05)
    time.sleep(0.4)
    assert first.poll() is None, "the first run finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    partial = query_in_subprocess(
        f"chdb://{tmp_path / 'killed'}", "SELECT count() AS n FROM {db}.equity FINAL WHERE symbol = ''"
    )[0]["n"]
    second = cli(killed_args, {**env, "TICKCAST_REPLAY_BATCH": "500"})
    out, _ = second.communicate(timeout=900)
    assert second.returncode == 0, out.decode()[-2000:]

    files = tmp_path / "files"
    write_files(cfg, files)
    from_files = cli(replay("files", "--input", str(files)), env)
    out, _ = from_files.communicate(timeout=900)
    assert from_files.returncode == 0, out.decode()[-2000:]

    want = trading_rows(f"chdb://{tmp_path / 'whole'}")
    n_equity = len([r for r in want["equity"] if r["symbol"] == ""])
    assert 0 < int(partial) < n_equity  # the crash happened mid-way
    assert len(want["fills"]) > 50 and {r["kind"] for r in want["risk_events"]} >= {"trip", "refusal"}
    assert not [r for r in want["risk_events"] if r["guard"] == "ordering"]  # no candle reached trading late
    assert trading_rows(f"chdb://{tmp_path / 'killed'}") == want
    assert trading_rows(f"chdb://{tmp_path / 'files'}") == want
