"""The model stage with real models on disk: fallbacks, hot reload, feature drift, windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.model_stage import ModelConfig, ModelLogic, _feature_values, _predictors
from models.feature_drift import FeatureRing
from models.registry import ModelRegistry
from models.training import Gates, train_model
from tickcast.features import MARKET_FEATURES, SENTIMENT_FEATURES

START = 1_763_683_200_000
NAMES = list(MARKET_FEATURES) + list(SENTIMENT_FEATURES)


def _train(root: Path, n: int = 3000, *, min_samples: int = 500, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    logit = 1.5 * X[:, 0] - 1.0 * X[:, NAMES.index("sent_ema_15m")]
    df = pd.DataFrame(X, columns=NAMES)
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df["symbol"] = "S"
    df["close_time"] = START + np.arange(n) * 60_000
    result = train_model(df, feature_names=NAMES, gates=Gates(0.5, 0.3), ablation=False, min_train_samples=min_samples)
    registry = ModelRegistry(root)
    version = registry.register(result)
    registry.promote(version, cooldown_s=0, force=True)
    return version


def _logic(root: Path, **kw: Any) -> ModelLogic:
    _predictors.pop(str(root), None)  # a fresh process-local predictor per test
    config = ModelConfig(model_dir=str(root), refresh_interval_s=0.0, live=False, recovery=False, **kw)
    return ModelLogic(config, None)


def _features(t: int, *, shift: float = 0.0, symbols: int = 5, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    rng = np.random.default_rng(seed + t)
    rows = []
    for i in range(symbols):
        row = {"symbol": f"S{i}", "interval": "1m", "close_time": t}
        row.update({n: float(v) for n, v in zip(NAMES, rng.normal(size=len(NAMES)), strict=True)})
        row["sent_ema_15m"] += shift
        rows.append(("features", row))
    return rows


def _predictions(out: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [r for item in out if item[0] == "rows" and item[1] == "predictions" for r in item[2]]


def test_predictions_carry_the_model_then_fall_back_when_its_file_is_corrupted(tmp_path: Path) -> None:
    version = _train(tmp_path)
    logic = _logic(tmp_path)
    out, _ = logic.on_batch([_features(START)])
    assert {p["model_version"] for p in _predictions(out)} == {version}
    onnx = tmp_path / "trained" / f"{version}.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    out, _ = logic.on_batch([_features(START + 60_000)])
    preds = _predictions(out)
    assert len(preds) == 5  # predictions keep flowing
    assert {(p["model_version"], p["fallback_reason"]) for p in preds} == {("baseline", "corrupt_model")}


def test_model_trained_on_too_few_rows_is_not_served(tmp_path: Path) -> None:
    _train(tmp_path, n=300, min_samples=100)
    logic = _logic(tmp_path, min_train_samples=500)
    preds = _predictions(logic.on_batch([_features(START)])[0])
    assert {(p["model_version"], p["fallback_reason"]) for p in preds} == {("baseline", "too_few_samples")}


def test_hot_reload_from_the_next_batch(tmp_path: Path) -> None:
    logic = _logic(tmp_path)
    preds = _predictions(logic.on_batch([_features(START)])[0])
    assert {(p["model_version"], p["fallback_reason"]) for p in preds} == {("baseline", "no_model")}
    version = _train(tmp_path)
    preds = _predictions(logic.on_batch([_features(START + 60_000)])[0])
    assert {(p["model_version"], p["fallback_reason"]) for p in preds} == {(version, "")}


@pytest.mark.parametrize("shift, expect_event", [(0.0, False), (0.5, True)])
def test_feature_drift_event_when_a_feature_moves(tmp_path: Path, shift: float, expect_event: bool) -> None:
    _train(tmp_path)
    logic = _logic(tmp_path, feature_window=200, feature_z=3.0)
    events = []
    for k in range(60):  # 300 rows > the 200-row window
        out, _ = logic.on_batch([_features(START + k * 60_000, shift=shift)])
        events += [r for item in out if item[0] == "rows" and item[1] == "drift_events" for r in item[2]]
    drifted = {e["feature"] for e in events if e["kind"] == "feature_drift"}
    if expect_event:
        assert drifted == {"sent_ema_15m"}  # z = 0.5 / (1/sqrt(200)) ≈ 7 ≥ 3; other features stay put
        event = next(e for e in events if e["feature"] == "sent_ema_15m")
        assert event["value"] >= 3.0 and event["threshold"] == 3.0
    else:
        assert drifted == set()


def test_calibration_windows_every_eval_period_of_event_time(tmp_path: Path) -> None:
    version = _train(tmp_path)
    logic = _logic(tmp_path, eval_every_ms=300_000, eval_slack_ms=120_000, window_ms=3_600_000)
    windows = []
    rng = np.random.default_rng(5)
    for k in range(40):
        t = START + k * 60_000
        items = _features(t)
        if k:  # labels for the previous minute, known at t
            items += [
                (
                    "label",
                    {
                        "symbol": f"S{i}",
                        "interval": "1m",
                        "close_time": t - 60_000,
                        "horizon": 1,
                        "label": int(rng.random() < 0.5),
                    },
                )
                for i in range(5)
            ]
        out, _ = logic.on_batch([items])
        windows += [r for item in out if item[0] == "rows" and item[1] == "calibration_windows" for r in item[2]]
    overall = [w for w in windows if w["scope"] == "overall" and w["model_version"] == version]
    ends = [w["window_end"] for w in overall]
    assert ends == sorted(ends) and all(e % 300_000 == 0 for e in ends)
    assert np.diff(ends).tolist() == [300_000] * (len(ends) - 1) and len(ends) >= 6
    # every window counts exactly the labeled predictions with close_time in (end - window, end]
    for w in overall:
        expected = 5 * sum(1 for k in range(39) if w["window_end"] - 3_600_000 < START + k * 60_000 <= w["window_end"])
        assert w["n"] == expected
    assert {w["scope"] for w in windows} >= {"overall", "S0", "S4"}


def _contradicted(tmp_path: Path, *, auto_retrain: bool, stop_when: Any = None) -> list[dict[str, Any]]:
    """Run a live model stage whose every label contradicts its prediction; the drift events."""
    from models.drift import DriftConfig

    config = ModelConfig(
        model_dir=str(tmp_path),
        refresh_interval_s=0.0,
        live=True,
        recovery=False,
        auto_retrain=auto_retrain,
        eval_every_ms=300_000,
        eval_slack_ms=60_000,
        window_ms=3_600_000,
        drift=DriftConfig(min_samples=20),
    )
    _predictors.pop(str(tmp_path), None)
    logic = ModelLogic(config, None)
    last: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for k in range(30):
        items = _features(START + k * 60_000) + [
            (
                "label",
                {
                    "symbol": p["symbol"],
                    "interval": "1m",
                    "close_time": p["close_time"],
                    "horizon": 1,
                    "label": int(p["prob"] < 0.5),
                },
            )
            for p in last
        ]
        out, _ = logic.on_batch([items])
        last = _predictions(out)
        events += [r for item in out if item[0] == "rows" and item[1] == "drift_events" for r in item[2]]
        if stop_when is not None and stop_when():
            break
    return events


def test_auto_retrain_starts_a_job_on_a_drift_recommendation(tmp_path: Path) -> None:
    from dataflows.model_stage import set_job_starter

    _train(tmp_path)
    started: list[tuple[str, dict[str, Any], str]] = []
    set_job_starter(lambda kind, params, trigger: started.append((kind, params, trigger)) or "job-1")
    try:
        _contradicted(tmp_path, auto_retrain=True, stop_when=lambda: bool(started))
        assert started and started[0][0] == "train" and started[0][2] == "drift"
        assert started[0][1]["reason"] == "retrain_recommended"
    finally:
        set_job_starter(None)


def test_without_auto_retrain_no_job_is_started(tmp_path: Path) -> None:
    from dataflows.model_stage import set_job_starter

    _train(tmp_path)
    started: list[Any] = []
    set_job_starter(lambda *a: started.append(a) or "x")
    try:
        events = _contradicted(tmp_path, auto_retrain=False)
        assert any(e["kind"] == "retrain_recommended" for e in events) and started == []  # recommended only
    finally:
        set_job_starter(None)


def test_feature_drift_hovering_at_the_threshold_is_one_event(tmp_path: Path) -> None:
    """z alternating just above and just below the threshold must not raise an event per crossing."""
    _train(tmp_path)
    logic = _logic(tmp_path, feature_window=200, feature_z=3.0)
    events = []
    rng = np.random.default_rng(9)
    shifts = [0.5] * 60 + [0.2] * 20 + [0.5] * 20 + [0.0] * 60 + [0.5] * 60  # up, hover, back to 0, up again
    for k, shift in enumerate(shifts):
        items = _features(START + k * 60_000, shift=shift, seed=int(rng.integers(1 << 30)))
        out, _ = logic.on_batch([items])
        events += [
            r
            for item in out
            if item[0] == "rows" and item[1] == "drift_events"
            for r in item[2]
            if r["feature"] == "sent_ema_15m"
        ]
    # the first drift, then (after returning to normal, |z| < 2.4, recorded as an exit) the second one
    assert [e["kind"] for e in events] == ["feature_drift", "feature_drift_exit", "feature_drift"]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 7), st.lists(st.lists(st.floats(-5, 5), max_size=12), max_size=6))
def test_feature_ring_keeps_the_last_window_values_like_one_add_per_value(size: int, chunks: list[list[float]]) -> None:
    from collections import deque

    ring = FeatureRing(np.full(size, np.nan))
    last: deque[float] = deque(maxlen=size)
    for chunk in chunks:
        ring.add_many(np.array(chunk, dtype=np.float64))
        last.extend(chunk)
        assert ring.count == len(last)
        assert sorted(ring.values[~np.isnan(ring.values)].tolist()) == sorted(last)
        # the next value overwrites the oldest one
        if len(last) == size:
            assert ring.values[ring.pos] == last[0]


def test_live_evaluations_come_after_the_predictions_and_equal_the_replayed_ones(tmp_path: Path) -> None:
    """Live, a calibration window that became due is evaluated in a later activation (the
    predictions of the candles that closed with its labels go out first); its rows are the
    ones a replay, which evaluates at once, computes."""
    _train(tmp_path)
    kw = {"eval_every_ms": 300_000, "eval_slack_ms": 120_000, "window_ms": 3_600_000}
    replay = _logic(tmp_path, **kw)
    live = ModelLogic(
        ModelConfig(model_dir=str(tmp_path), refresh_interval_s=0.0, live=True, recovery=False, **kw), None
    )
    rng = np.random.default_rng(9)

    def windows(out: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [r for item in out if item[0] == "rows" and item[1] == "calibration_windows" for r in item[2]]

    got: dict[str, list[dict[str, Any]]] = {"live": [], "replay": []}
    for k in range(30):
        t = START + k * 60_000
        items = _features(t)
        if k:
            items += [
                (
                    "label",
                    {
                        "symbol": f"S{i}",
                        "interval": "1m",
                        "close_time": t - 60_000,
                        "horizon": 1,
                        "label": int(rng.random() < 0.5),
                    },
                )
                for i in range(5)
            ]
        got["replay"] += windows(replay.on_batch([items])[0])
        out, _ = live.on_batch([items])
        assert windows(out) == [] and len(_predictions(out)) == 5  # predictions now, the evaluation later
        assert (live.notify_at() is not None) == (k > 0)  # labels arrived: a check is due
        got["live"] += windows(live.on_notify()[0])
        assert live.notify_at() is None
    assert len(got["replay"]) >= 4
    assert got["live"] == got["replay"]


def test_live_labels_reach_the_baseline_at_once_and_their_pairing_survives_a_restart(tmp_path: Path) -> None:
    """Live, labels are paired with their predictions in a later activation, but the baseline
    (what serves without a model) counts them before the candles that came with them; a
    restart in between loses no pairing."""
    replay = _logic(tmp_path / "replay")  # no model in either directory: the baseline serves
    _predictors.pop(str(tmp_path / "live"), None)
    config = ModelConfig(model_dir=str(tmp_path / "live"), refresh_interval_s=0.0, live=True, recovery=True)
    live = ModelLogic(config, None)
    rng = np.random.default_rng(4)
    given: list[dict[str, Any]] = []
    for k in range(12):
        t = START + k * 60_000
        labels = (
            [
                {
                    "symbol": f"S{i}",
                    "interval": "1m",
                    "close_time": t - 60_000,
                    "horizon": 1,
                    "label": int(rng.random() < 0.7),
                }
                for i in range(5)
            ]
            if k
            else []
        )
        items = [("label", row) for row in labels] + _features(t)
        given += labels
        expected = pd.DataFrame(given or [{"symbol": "S0", "label": 0.5}]).groupby("symbol")["label"].mean()
        replayed = {p["symbol"]: p["prob"] for p in _predictions(replay.on_batch([items])[0])}
        served = {p["symbol"]: p["prob"] for p in _predictions(live.on_batch([items])[0])}
        assert served == replayed
        assert served == pytest.approx({s: float(expected.get(s, 0.5)) for s in served})
        assert [row["close_time"] for row in live.state.labels_due] == [t - 60_000] * len(labels)
        live = ModelLogic(config, live.snapshot())  # the process restarts before the next activation
        assert (live.notify_at() is not None) == bool(labels)
        live.on_notify()
        assert live.state.labels_due == []
    assert live.state.accuracy.state("baseline") == replay.state.accuracy.state("baseline")
    assert live.state.accuracy.state("baseline").n == 5 * 11  # every label paired once


@pytest.mark.parametrize("names", [["a", "b"], ["b"], []])
def test_feature_values_take_each_name_in_order_and_none_for_a_missing_one(names: list[str]) -> None:
    full = [{"a": 1.0, "b": None, "c": 3.0}, {"a": 4.0, "b": 5.0, "c": 6.0}]
    assert [list(v) for v in _feature_values(full, names)] == [[row.get(n) for n in names] for row in full]
    partial = [*full, {"c": 7.0}]  # a row without the model's features (KeyError path)
    assert [list(v) for v in _feature_values(partial, names)] == [[row.get(n) for n in names] for row in partial]
