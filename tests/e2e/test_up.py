"""`tickcast up` as the README runs it (defaults; only port and data paths differ)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
KEY = {"X-API-Key": "tickcast-dev-key"}


def test_up_serves_health_and_rows_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickcast.app.cli",
            "up",
            "--port",
            str(port),
            "--store",
            f"chdb://{tmp_path / 'ch'}",
            "--model-dir",
            str(tmp_path / "models"),
        ],
        cwd=tmp_path,
        env={**os.environ, "TICKCAST_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        health = None
        while time.time() - started < 60:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert health is not None and health.status_code == 200, "no /healthz within a minute"
        assert health.json()["store"] is True and health.json()["flow"] is True

        def rows(table: str) -> int:
            r = httpx.get(f"{base}/api/{table}", params={"symbol": "BTCUSDT", "limit": 10000}, timeout=5)
            return r.json()["count"] if r.status_code == 200 else 0

        while time.time() - started < 60 and not (rows("candles") >= 2800 and rows("predictions")):
            time.sleep(0.5)
        assert rows("candles") >= 2800  # the 48 h backfill of the simulator (2880 minutes)
        latest = httpx.get(f"{base}/api/sentiment/latest", params={"symbol": "BTCUSDT"}, timeout=5)
        assert latest.status_code == 200 and latest.json()
        # The bootstrap job trains and promotes a first model from the backfill; predictions switch to it.
        version = None
        while time.time() - started < 180 and version is None:
            prod = httpx.get(f"{base}/api/models/promotion-status", timeout=5).json().get("production")
            version = prod if isinstance(prod, str) else (prod or {}).get("version")
            time.sleep(1)
        assert version, "no model was bootstrapped"
        # Paper trading with the defaults: the bootstrap model's probabilities cross the entry
        # threshold within minutes; the equity curve covers the backfill from the start.
        positions: list = []
        while time.time() - started < 480 and not positions:
            positions = httpx.get(f"{base}/api/trading/positions", params={"status": "all"}, timeout=5).json()[
                "positions"
            ]
            time.sleep(2)
        assert positions, "no paper position within 5 minutes of the bootstrap model"
        assert positions[0]["model_version"] == version
        curve = httpx.get(f"{base}/api/trading/equity", params={"step": "1h"}, timeout=5).json()
        assert curve["count"] >= 40 and curve["points"][0]["equity"] == 10_000.0  # 48 h of hourly points
        risk = httpx.get(f"{base}/api/trading/risk", timeout=5).json()
        assert risk["exchange"]["mode"] == "paper" and {g["state"] for g in risk["guards"]} <= {"ok", "full"}
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        for name in (
            "sentiment_ingest_total",
            "feature_sentiment_join_attempts_total",
            "ml_inference_time_seconds",
            "ml_retrains_total",
            "sentiment_sse_clients",
            "trading_equity",
            "trading_fills_total",
        ):
            assert name in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "ch").exists() and any((tmp_path / "models" / "trained").glob("*.onnx"))
