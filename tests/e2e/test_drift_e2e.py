"""End to end on the simulator: train on a day, then watch two more days with the model.

A stationary continuation must produce no recommendation; the same continuation with a
regime shift must produce one soon after the breach streak can complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dataflows.simulator import SimConfig, write_files
from tickcast.app.backfill import run_replay
from tickcast.lifecycle import train_job
from tickcast.settings import load_settings
from tickcast.store import Store

pytestmark = pytest.mark.e2e
START = 1_763_683_200_000
DAY = 86_400_000
EVERY_S = 300
TRIGGER = 5


def _settings(tmp: Path, store: Store) -> Any:
    return load_settings(
        MODEL_STORE_DIR=str(tmp / "models"),
        CALIBRATION_EVAL_EVERY_SECONDS=EVERY_S,
        CALIBRATION_MONITOR_ABS_STREAK_TRIGGER=TRIGGER,
        CALIBRATION_MONITOR_REL_STREAK_TRIGGER=TRIGGER,
        AUTO_PROMOTE_ENABLED=True,
        PROMOTION_COOLDOWN_SECONDS=0,
    )


def _train_on_first_day(tmp: Path, store: Store, shift: int | None) -> tuple[Any, str]:
    settings = _settings(tmp, store)
    data = tmp / "sim"
    # One deterministic 3-day world: day 1 trains the model, days 2-3 are monitored.
    write_files(SimConfig(symbols=8, hours=72, seed=11, start_ms=START, regime_shift_ms=shift), data)
    day1 = tmp / "day1"
    day1.mkdir()
    for name in ("ticks.jsonl", "candles.jsonl"):
        with (data / name).open() as src, (day1 / name).open("w") as dst:
            for line in src:
                if '"ingest_ts":' in line and _ingest(line) < START + DAY:
                    dst.write(line)
    run_replay(settings, inputs=[day1], store=store, progress=False)
    result = train_job(settings, store)({"promote": True}, lambda f, m: None)
    assert result["passed"] and result["promoted"], result
    return settings, result["version"]


def _ingest(line: str) -> int:
    import orjson

    return int(orjson.loads(line)["ingest_ts"])


def _recommendations(store: Store, version: str) -> list[dict[str, Any]]:
    return store.rows(
        "SELECT kind, toUnixTimestamp64Milli(ts) AS ts FROM {db}.drift_events FINAL "
        "WHERE kind IN ('retrain_recommended', 'recalibrate') AND model_version = {v:String} ORDER BY ts",
        {"v": version},
    )


def test_stationary_days_give_no_recommendation(store: Store, tmp_path: Path) -> None:
    settings, version = _train_on_first_day(tmp_path, store, shift=None)
    run_replay(settings, inputs=[tmp_path / "sim"], store=store, progress=False)
    windows = store.rows(
        "SELECT count() AS n, max(ece) AS worst FROM {db}.calibration_windows FINAL "
        "WHERE model_version = {v:String} AND scope = 'overall' AND state != 'too_few_samples'",
        {"v": version},
    )
    assert windows[0]["n"] > 400  # two days of 5-minute evaluations were really made
    assert _recommendations(store, version) == []


def test_regime_shift_is_recommended_soon_after_the_streak_can_complete(store: Store, tmp_path: Path) -> None:
    shift = START + DAY + 12 * 3_600_000
    settings, version = _train_on_first_day(tmp_path, store, shift=shift)
    run_replay(settings, inputs=[tmp_path / "sim"], store=store, progress=False)
    recs = _recommendations(store, version)
    assert recs, "a regime shift must produce a recommendation"
    breaches = store.rows(
        "SELECT toUnixTimestamp64Milli(window_end) AS t FROM {db}.calibration_windows FINAL "
        "WHERE model_version = {v:String} AND scope = 'overall' AND delta_ece > {abs:Float64} "
        "AND state != 'too_few_samples' AND window_end > fromUnixTimestamp64Milli({day2:Int64}) ORDER BY t",
        {"v": version, "abs": settings.CALIBRATION_MONITOR_ECE_DRIFT_ABS, "day2": START + DAY},
    )
    first_breach = breaches[0]["t"]
    assert first_breach > shift
    streak_complete = first_breach + (TRIGGER - 1) * EVERY_S * 1000
    assert recs[0]["ts"] <= streak_complete + 2 * EVERY_S * 1000
    assert recs[0]["kind"] == "retrain_recommended"  # AUC collapses, so Brier/PR-AUC degrade too
    assert all(r["ts"] > shift for r in recs)
