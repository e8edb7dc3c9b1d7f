"""Accuracy health per model version in the model stage (issue 17): a model switch in the
middle of a run starts the new version at INSUFFICIENT_DATA, its accuracy counts only its
own labeled predictions, and the emergency retrain fires only from its own CRITICAL.

The oracle is a pandas recomputation over the emitted prediction rows and the labels the
test gave, filtered by model version — never the stage's own state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataflows.hooks import FlowHooks
from dataflows.items import Label, Rows
from dataflows.model_stage import ModelConfig, ModelLogic
from tests.dataflows.test_model_stage import START, _features, _predictions, _train

WINDOW, MIN_SAMPLES = 200, 50
EVERY = 300_000  # eval_every_ms


def _rows(out: list[tuple[Any, ...]], table: str) -> list[dict[str, Any]]:
    return [r for item in out if isinstance(item, Rows) and item.table == table for r in item.rows]


def _oracle(preds: pd.DataFrame, labels: pd.DataFrame, version: str) -> tuple[float | None, int]:
    """Directional accuracy over the version's newest WINDOW labeled predictions, by pandas."""
    joined = preds[preds["model_version"] == version].merge(labels, on=["symbol", "close_time"])
    joined = joined.sort_values(["close_time", "symbol"]).tail(WINDOW)
    if joined.empty:
        return None, 0
    right = (joined["prob"] >= 0.5) == (joined["label"] == 1)
    return float(right.mean()), len(joined)


def test_model_switch_new_version_starts_insufficient_and_triggers_only_on_its_own_critical(tmp_path: Path) -> None:
    config = ModelConfig(
        model_dir=str(tmp_path),
        refresh_interval_s=0.0,
        live=True,
        recovery=False,
        auto_retrain=True,
        eval_every_ms=EVERY,
        eval_slack_ms=60_000,
        window_ms=3_600_000,
        accuracy_window=WINDOW,
        accuracy_min_samples=MIN_SAMPLES,
        emergency_cooldown_s=86_400,  # one emergency retrain for the whole run
    )
    started: list[tuple[str, dict[str, Any], str]] = []
    hooks = FlowHooks(start_job=lambda kind, params, trigger: started.append((kind, params, trigger)) or "job-1")
    logic = ModelLogic(config, None, hooks)
    all_preds: list[dict[str, Any]] = []
    given: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    windows: list[dict[str, Any]] = []
    last: list[dict[str, Any]] = []
    version = None
    checked_insufficient = False
    for k in range(150):
        t = START + k * 60_000
        if k == 30:  # the baseline has served 30 minutes; its record is 0 % right
            version = _train(tmp_path)
        # every baseline prediction is wrong (the baseline is CRITICAL); the new model is
        # right at first, then wrong from minute 90 on
        labels = [
            {
                "symbol": p["symbol"],
                "interval": "1m",
                "close_time": p["close_time"],
                "horizon": 1,
                "label": int((p["prob"] >= 0.5) == (p["model_version"] != "baseline" and k < 90)),
            }
            for p in last
        ]
        given += labels
        out, _ = logic.on_batch([_features(t) + [Label(row) for row in labels]])
        out += logic.on_notify()[0]
        last = _predictions(out)
        all_preds += last
        events += _rows(out, "drift_events")
        windows += _rows(out, "calibration_windows")
        # the stage folds a labeled prediction in at its event-time boundary (the next
        # multiple of eval_every_ms after its close; dataflows/model_stage.py): the oracle
        # counts the labels of the boundaries the stage has processed
        through = logic.state.processed_through
        folded = [row for row in given if -(-row["close_time"] // EVERY) * EVERY <= through]
        preds_df, labels_df = pd.DataFrame(all_preds), pd.DataFrame(folded or [{"symbol": "", "close_time": 0}])

        base_acc, base_n = _oracle(preds_df, labels_df, "baseline")
        if base_n:
            assert logic.state.accuracy.state("baseline").accuracy == pytest.approx(base_acc)
        if version is None:
            continue
        own_acc, own_n = _oracle(preds_df, labels_df, version)
        state = logic.state.accuracy.state(version)
        assert state.n == own_n  # its own labeled predictions only, never the baseline's
        if own_n:
            assert state.accuracy == pytest.approx(own_acc, abs=1e-12)
        if own_n < MIN_SAMPLES:
            assert state.health == "INSUFFICIENT_DATA"
            if base_n >= MIN_SAMPLES:
                checked_insufficient = True  # the baseline's CRITICAL record is right there
        critical_events = [e for e in events if e["kind"] == "accuracy_critical"]
        if own_n < MIN_SAMPLES or own_acc >= 0.5:
            assert critical_events == [], f"minute {k}: emergency without the version's own CRITICAL"

    assert checked_insufficient
    critical = [e for e in events if e["kind"] == "accuracy_critical"]
    assert len(critical) == 1 and critical[0]["model_version"] == version
    assert critical[0]["value"] < 0.5 and [job for job in started if job[2] == "emergency"] == [
        ("train", {"reason": "accuracy_critical", "model_version": version}, "emergency")
    ]
    # the overall calibration rows carry each version's own accuracy: the new model's is None
    # until it has MIN_SAMPLES, then 100 % (right until minute 90), never the baseline's 0 %
    own_rows = [w for w in windows if w["scope"] == "overall" and w["model_version"] == version]
    early = [w["accuracy"] for w in own_rows if w["window_end"] < START + 90 * 60_000]
    assert early[0] is None and set(early[1:]) <= {None, 1.0} and 1.0 in early
    assert {w["accuracy"] for w in windows if w["model_version"] == "baseline" and w["scope"] == "overall"} <= {
        0.0,
        None,
    }


def test_gauge_follows_the_serving_version(tmp_path: Path) -> None:
    from tickcast import metrics

    config = ModelConfig(
        model_dir=str(tmp_path), refresh_interval_s=0.0, live=False, recovery=False, accuracy_min_samples=10
    )
    logic = ModelLogic(config, None)
    last: list[dict[str, Any]] = []
    # baseline, every prediction right: GOOD (12 minutes: the labels of the first two
    # 5-minute boundaries, 30, are folded in by the last batch)
    for k in range(12):
        labels = [
            {
                **{f: p[f] for f in ("symbol", "close_time")},
                "interval": "1m",
                "horizon": 1,
                "label": int(p["prob"] >= 0.5),
            }
            for p in last
        ]
        last = _predictions(logic.on_batch([_features(START + k * 60_000) + [Label(r) for r in labels]])[0])
    assert metrics.ML_ACCURACY._value.get() == 100.0  # noqa: SLF001
    assert metrics.ML_ACCURACY_HEALTH.labels("GOOD")._value.get() == 1.0  # noqa: SLF001
    _train(tmp_path)
    logic.on_batch([_features(START + 13 * 60_000)])  # the model now serves: no record of its own
    assert np.isnan(metrics.ML_ACCURACY._value.get())  # noqa: SLF001
    assert metrics.ML_ACCURACY_HEALTH.labels("INSUFFICIENT_DATA")._value.get() == 1.0  # noqa: SLF001
    assert metrics.ML_ACCURACY_HEALTH.labels("GOOD")._value.get() == 0.0  # noqa: SLF001
