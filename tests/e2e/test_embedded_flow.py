"""The embedded system's live flow: simulator backfill, bootstrap training, hot reload."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tickcast.app.embedded import EmbeddedSystem
from tickcast.lifecycle import registry_for
from tickcast.settings import load_settings
from tickcast.store import Store

pytestmark = pytest.mark.e2e


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_backfill_then_bootstrap_model_is_hot_reloaded_without_restart(store: Store, tmp_path: Path) -> None:
    settings = load_settings(
        MODEL_STORE_DIR=str(tmp_path / "models"),
        TICKCAST_SIM_SYMBOLS=10,
        TICKCAST_SIM_BACKFILL_HOURS=8,
        TICKCAST_SIM_SPEED=120,
        TICKCAST_SIM_SEED=3,
    )
    system = EmbeddedSystem(settings, store=store)
    system.start_flow()
    try:
        wait_for(lambda: store.count("predictions", "model_version = 'baseline'") > 100, 120, "baseline predictions")
        fallback = store.rows(
            "SELECT DISTINCT fallback_reason FROM {db}.predictions FINAL WHERE model_version='baseline'"
        )
        assert {r["fallback_reason"] for r in fallback} == {"no_model"}
        registry = registry_for(settings, None)
        wait_for(lambda: registry.production() is not None, 180, "the bootstrap model to be trained and promoted")
        version = registry.production()["version"]
        # The running flow switches to it from the next candle on, without a restart.
        wait_for(
            lambda: store.count("predictions", f"model_version = '{version}'") > 0, 120, f"predictions by {version}"
        )
        job = store.rows("SELECT status, trigger FROM {db}.jobs FINAL WHERE kind = 'train'")
        assert job and job[0]["status"] == "succeeded" and job[0]["trigger"] == "bootstrap"
        assert system.flow_alive()
        assert store.count("model_registry", f"version = '{version}' AND status = 'production'") == 1
    finally:
        system.stop()
    assert not system.flow_alive()


def test_backfill_job_stores_history_without_trading_into_the_live_account(store: Store, tmp_path: Path) -> None:
    """A backfill inside `tickcast up` replays files with a flow of its own; its trading stage
    (a fresh book) would write fills, positions and equity under the live TRADING_ACCOUNT
    beside the running stage's (seen as two open positions of one symbol on the dashboard).
    The job stores the history and leaves trading to the live stage and `tickcast backtest`."""
    from dataflows.simulator import SimConfig, write_files
    from tickcast.app.embedded import backfill_job

    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"), TRADING_TRADE_BASELINE=True)
    write_files(SimConfig(symbols=3, hours=2, seed=4, start_ms=1_763_683_200_000), tmp_path / "sim")
    result = backfill_job(settings, store)({"inputs": [str(tmp_path / "sim")]}, lambda f, m: None)
    assert result["summary"]
    assert store.count("candles") > 300 and store.count("predictions") > 300
    for table in ("orders", "fills", "positions", "equity", "risk_events"):
        assert store.count(table) == 0, table
