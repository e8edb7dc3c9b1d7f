"""Lifecycle jobs against the real ClickHouse engine: labeler catch-up, train refusal, recalibrate."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from dataflows.simulator import SimConfig, write_files
from tickcast.app.backfill import run_replay
from tickcast.lifecycle import labeler_job, recalibrate_job, registry_for, train_job
from tickcast.settings import load_settings
from tickcast.store import Store

START = 1_763_683_200_000


def _candles(store: Store, n: int, symbol: str = "XRPUSDT", start: int = START) -> list[float]:
    closes = [1.0 + 0.01 * ((i * 7) % 5 - 2) for i in range(n)]
    store.insert_rows(
        "candles",
        [
            {
                "symbol": symbol,
                "interval": "1m",
                "open_time": start + i * 60_000,
                "close_time": start + (i + 1) * 60_000,
                "open": 1.0,
                "high": 1.05,
                "low": 0.95,
                "close": c,
                "volume": 1.0,
                "ingest_ts": start + (i + 1) * 60_000,
            }
            for i, c in enumerate(closes)
        ],
    )
    return closes


def test_labeler_catches_up_missing_labels_with_seed_defaults(store: Store, tmp_path: Path) -> None:
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path))
    closes = _candles(store, 30)
    # one label already there (from the stream), with a wrong value: force rewrites it
    store.insert_rows(
        "labels",
        [
            {
                "symbol": "XRPUSDT",
                "interval": "1m",
                "close_time": START + 60_000,
                "horizon": 1,
                "label": 1 - int(closes[1] > closes[0]),
                "close_t": closes[0],
                "close_th": closes[1],
            }
        ],
    )
    run = labeler_job(settings, store)
    result = run({"min_age": 0, "limit": 1000, "force": False}, lambda f, m: None)
    assert result["labeled"] == 28  # 29 pairs (T, T+1m) minus the one already labeled
    result = run({"min_age": 0, "limit": 5, "force": True}, lambda f, m: None)
    assert result["labeled"] == 5  # the limit holds
    run({"min_age": 0, "limit": 1000, "force": True}, lambda f, m: None)
    got = pd.DataFrame(
        store.rows("SELECT toUnixTimestamp64Milli(close_time) AS t, label FROM {db}.labels FINAL ORDER BY t")
    )
    expected = [int(closes[i + 1] > closes[i]) for i in range(29)]
    assert got["label"].tolist() == expected and got["t"].tolist() == [START + (i + 1) * 60_000 for i in range(29)]
    # min_age: candles younger than that are left for later
    fresh = int(time.time() * 1000) // 60_000 * 60_000 - 5 * 60_000
    _candles(store, 4, symbol="NEWUSDT", start=fresh)
    result = run({"min_age": 3600, "limit": 1000, "force": False}, lambda f, m: None)
    assert result["labeled"] == 0


def test_train_refuses_below_min_train_samples(store: Store, tmp_path: Path) -> None:
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "m"), MIN_TRAIN_SAMPLES=5000)
    data = tmp_path / "sim"
    write_files(SimConfig(symbols=2, hours=2, seed=1, start_ms=START), data)
    run_replay(settings, inputs=[data], store=store, progress=False)
    with pytest.raises(RuntimeError, match="MIN_TRAIN_SAMPLES=5000"):
        train_job(settings, store)({}, lambda f, m: None)
    assert registry_for(settings, None).list() == []


def test_recalibrate_refits_the_temperature_and_registers_a_child(store: Store, tmp_path: Path) -> None:
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "m"), PROMOTION_COOLDOWN_SECONDS=0)
    data = tmp_path / "sim"
    write_files(SimConfig(symbols=8, hours=20, seed=2, start_ms=START), data)
    run_replay(settings, inputs=[data], store=store, progress=False)
    trained = train_job(settings, store)({"promote": True}, lambda f, m: None)
    assert trained["promoted"]
    result = recalibrate_job(settings, store)({"since_ms": START}, lambda f, m: None)
    registry = registry_for(settings, store)
    meta = registry.metadata(result["version"])
    assert result["version"] != trained["version"] and result["temperature"] > 0
    assert meta.get("parent_version") == trained["version"] or meta.get("kind") == "recalibrate"
    mirrored = store.rows("SELECT version, status FROM {db}.model_registry FINAL ORDER BY version")
    assert {r["version"] for r in mirrored} == {trained["version"], result["version"]}
