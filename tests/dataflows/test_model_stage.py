"""The model stage with real models on disk: fallbacks, hot reload, feature drift, windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.hooks import FlowHooks
from dataflows.items import Features, Label, Rows
from dataflows.model_stage import ModelConfig, ModelLogic, _feature_values
from dataflows.progress import END, Progress
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
    config = ModelConfig(model_dir=str(root), refresh_interval_s=0.0, live=False, recovery=False, **kw)
    return ModelLogic(config, None)


def _features(t: int, *, shift: float = 0.0, symbols: int = 5, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    rng = np.random.default_rng(seed + t)
    rows = []
    for i in range(symbols):
        row = {"symbol": f"S{i}", "interval": "1m", "close_time": t}
        row.update({n: float(v) for n, v in zip(NAMES, rng.normal(size=len(NAMES)), strict=True)})
        row["sent_ema_15m"] += shift
        rows.append(Features(row))
    return rows


def _predictions(out: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [r for item in out if isinstance(item, Rows) and item.table == "predictions" for r in item.rows]


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
        events += [r for item in out if isinstance(item, Rows) and item.table == "drift_events" for r in item.rows]
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
                Label(
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
        windows += [
            r for item in out if isinstance(item, Rows) and item.table == "calibration_windows" for r in item.rows
        ]
    overall = [w for w in windows if w["scope"] == "overall" and w["model_version"] == version]
    ends = [w["window_end"] for w in overall]
    assert ends == sorted(ends) and all(e % 300_000 == 0 for e in ends)
    assert np.diff(ends).tolist() == [300_000] * (len(ends) - 1) and len(ends) >= 6
    # every window counts exactly the labeled predictions with close_time in (end - window, end]
    for w in overall:
        expected = 5 * sum(1 for k in range(39) if w["window_end"] - 3_600_000 < START + k * 60_000 <= w["window_end"])
        assert w["n"] == expected
    assert {w["scope"] for w in windows} >= {"overall", "S0", "S4"}


def _contradicted(
    tmp_path: Path, *, auto_retrain: bool, stop_when: Any = None, hooks: FlowHooks | None = None
) -> list[dict[str, Any]]:
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
    logic = ModelLogic(config, None, hooks)
    last: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for k in range(30):
        items = _features(START + k * 60_000) + [
            Label(
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
        events += [r for item in out if isinstance(item, Rows) and item.table == "drift_events" for r in item.rows]
        if stop_when is not None and stop_when():
            break
    return events


def test_auto_retrain_starts_a_job_on_a_drift_recommendation(tmp_path: Path) -> None:
    _train(tmp_path)
    started: list[tuple[str, dict[str, Any], str]] = []
    hooks = FlowHooks(start_job=lambda kind, params, trigger: started.append((kind, params, trigger)) or "job-1")
    _contradicted(tmp_path, auto_retrain=True, stop_when=lambda: bool(started), hooks=hooks)
    assert started and started[0][0] == "train" and started[0][2] == "drift"
    assert started[0][1]["reason"] == "retrain_recommended"


def test_without_auto_retrain_no_job_is_started(tmp_path: Path) -> None:
    _train(tmp_path)
    started: list[Any] = []
    hooks = FlowHooks(start_job=lambda *a: started.append(a) or "x")
    events = _contradicted(tmp_path, auto_retrain=False, hooks=hooks)
    assert any(e["kind"] == "retrain_recommended" for e in events) and started == []  # recommended only


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
            if isinstance(item, Rows) and item.table == "drift_events"
            for r in item.rows
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
        return [r for item in out if isinstance(item, Rows) and item.table == "calibration_windows" for r in item.rows]

    got: dict[str, list[dict[str, Any]]] = {"live": [], "replay": []}
    for k in range(30):
        t = START + k * 60_000
        items = _features(t)
        if k:
            items += [
                Label(
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
        assert live.notify_at() is not None  # side work due: the labels' pairing, the served rows' boundary
        got["live"] += windows(live.on_notify()[0])
        assert live.notify_at() is None
    assert len(got["replay"]) >= 4
    assert got["live"] == got["replay"]


def test_live_labels_reach_the_baseline_at_once_and_their_pairing_survives_a_restart(tmp_path: Path) -> None:
    """Live, labels are paired with their predictions in a later activation, but the baseline
    (what serves without a model) counts them before the candles that came with them; a
    restart in between loses no pairing."""
    replay = _logic(tmp_path / "replay")  # no model in either directory: the baseline serves
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
        items = [Label(row) for row in labels] + _features(t)
        given += labels
        expected = pd.DataFrame(given or [{"symbol": "S0", "label": 0.5}]).groupby("symbol")["label"].mean()
        replayed = {p["symbol"]: p["prob"] for p in _predictions(replay.on_batch([items])[0])}
        served = {p["symbol"]: p["prob"] for p in _predictions(live.on_batch([items])[0])}
        assert served == replayed
        assert served == pytest.approx({s: float(expected.get(s, 0.5)) for s in served})
        assert [row["close_time"] for row, _known in live.state.labels_due] == [t - 60_000] * len(labels)
        live = ModelLogic(config, live.snapshot())  # the process restarts before the next activation
        # the labels and the feature rows (every row feeds the feature-drift rings) wait for the side work
        assert live.notify_at() is not None and len(live.state.served_due) == 1
        live.on_notify()
        assert live.state.labels_due == [] and live.state.served_due == []
    live.on_eof(), replay.on_eof()  # the last boundaries are complete: fold them in
    assert live.state.accuracy.state("baseline") == replay.state.accuracy.state("baseline")
    assert live.state.accuracy.state("baseline").n == 5 * 11  # every label paired once
    assert live.state.feature_drift.rings.keys() == replay.state.feature_drift.rings.keys()
    for name, ring in live.state.feature_drift.rings.items():
        assert ring.count == replay.state.feature_drift.rings[name].count
        np.testing.assert_array_equal(ring.values, replay.state.feature_drift.rings[name].values)
    assert sum(ring.count for ring in live.state.feature_drift.rings.values()) > 0


@pytest.mark.parametrize("names", [["a", "b"], ["b"], []])
def test_feature_values_take_each_name_in_order_and_none_for_a_missing_one(names: list[str]) -> None:
    full = [{"a": 1.0, "b": None, "c": 3.0}, {"a": 4.0, "b": 5.0, "c": 6.0}]
    assert [list(v) for v in _feature_values(full, names)] == [[row.get(n) for n in names] for row in full]
    partial = [*full, {"c": 7.0}]  # a row without the model's features (KeyError path)
    assert [list(v) for v in _feature_values(partial, names)] == [[row.get(n) for n in names] for row in partial]


# -- boundaries: batch-, partition- and gap-independent windows (issue 15) ------------------
def _stream(symbols: int, minutes: int, seed: int) -> list[tuple[Any, ...]]:
    """Per symbol, in its own order: features of each minute's candle (released 2.5 s after its
    close) and the label of the previous one (known when this candle arrived, 1 s after close)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(symbols):
        for k in range(minutes):
            t = START + k * 60_000
            if k:
                label = {
                    "symbol": f"S{i}",
                    "interval": "1m",
                    "close_time": t - 60_000,
                    "horizon": 1,
                    "label": int(rng.random() < 0.5),
                }
                items.append(Label(label, t + 1_000))
            row = {"symbol": f"S{i}", "interval": "1m", "close_time": t}
            row.update({n: float(v) for n, v in zip(NAMES, rng.normal(size=len(NAMES)) + 0.3, strict=True)})
            items.append(Features(row, t + 2_500))
    return items


def _tables(out: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    got: dict[str, list[tuple[Any, ...]]] = {}
    for item in out:
        if isinstance(item, Rows) and item.table in ("calibration_windows", "drift_events", "predictions"):
            got.setdefault(item.table, []).extend(
                tuple(sorted((k, v) for k, v in r.items() if k != "latency_ms")) for r in item.rows
            )
    return {k: sorted(v, key=repr) for k, v in got.items()}


def test_windows_and_drift_do_not_depend_on_batches_or_partitions(tmp_path: Path) -> None:
    """One item per activation in ingest order (the live path) against three partitions that run
    hours apart, in random batches, each reporting its progress now and then: the same
    predictions, calibration windows and drift events."""
    from dataflows.decode import ALL_SHARDS
    from models.drift import DriftConfig

    _train(tmp_path)
    items = _stream(symbols=9, minutes=240, seed=3)
    kw = {"eval_every_ms": 300_000, "window_ms": 3_600_000, "drift": DriftConfig(min_samples=50)}
    per_record = _logic(tmp_path, **kw)
    out: list[tuple[Any, ...]] = []
    for item in sorted(items, key=lambda it: it.known):  # one ordered source, one item per activation
        out += per_record.on_batch([[item]])[0]
    out += per_record.on_eof()[0]
    reference = _tables(out)
    assert len(reference["calibration_windows"]) > 400 and reference["drift_events"]

    partitions = ("p0", "p1", "p2")
    stage = _logic(tmp_path, partitions=partitions, **kw)
    rng = np.random.default_rng(8)
    streams = {
        p: sorted((it for it in items if int(it.row["symbol"][1:]) % 3 == j), key=lambda it: it.known)
        for j, p in enumerate(partitions)
    }
    out = []
    while any(streams.values()):
        p = partitions[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]  # p0 runs far ahead of p2
        take = int(rng.integers(1, 400))
        batch, streams[p] = streams[p][:take], streams[p][take:]
        if not batch:
            continue
        newest = END if not streams[p] else streams[p][0].known  # the partition's next record is not older
        marks = [Progress(p, shard, newest) for shard in ALL_SHARDS] if rng.random() < 0.5 or not streams[p] else []
        out += stage.on_batch([batch + marks])[0]
    out += stage.on_eof()[0]
    assert _tables(out) == reference


def test_a_sparse_history_evaluates_only_the_boundaries_labels_entered(tmp_path: Path) -> None:
    """Hourly candles over two days: one evaluation per new label (48), not one per 5 minutes
    of event time in between (576); each window holds the labels of its last 6 hours."""
    logic = _logic(tmp_path, eval_every_ms=300_000, window_ms=6 * 3_600_000)
    rng = np.random.default_rng(2)
    hour = 3_600_000
    out: list[tuple[Any, ...]] = []
    for k in range(49):
        t = START + k * hour
        items: list[tuple[Any, ...]] = [Features({"symbol": "S0", "interval": "1h", "close_time": t}, t + 3_000)]
        if k:
            label = {
                "symbol": "S0",
                "interval": "1h",
                "close_time": t - hour,
                "horizon": 1,
                "label": int(rng.random() < 0.5),
            }
            items.insert(0, Label(label, t + 1_000))
        out += logic.on_batch([items])[0]
    out += logic.on_eof()[0]
    overall = [r for r in _tables(out)["calibration_windows"] if dict(r)["scope"] == "overall"]
    ends = sorted(dict(r)["window_end"] for r in overall)
    # the label of candle t - 1h, known at t + 1 s, enters at boundary t (⌈(t + 1 s − slack) / 5 min⌉)
    assert ends == [START + k * hour for k in range(1, 49)]
    assert [dict(r)["n"] for r in sorted(overall, key=lambda r: dict(r)["window_end"])] == [
        min(k, 5) for k in range(1, 49)
    ]


def test_a_snapshot_from_before_the_boundaries_resumes(tmp_path: Path) -> None:
    """A live model stage snapshotted by the previous version (labels waiting as bare rows, no
    boundaries) resumes: the labels are paired and land in the windows."""
    import pickle

    from dataflows.model_stage import ModelState

    old = ModelState()
    del old.boundaries, old.newest_known, old.progress, old.served_due  # fields that version did not have
    label = {"symbol": "S0", "interval": "1m", "close_time": START, "horizon": 1, "label": 1}
    old.labels_due = [label]
    old.predictions = {"S0": {START: (0.8, "baseline")}}
    config = ModelConfig(model_dir=str(tmp_path), refresh_interval_s=0.0, live=True, recovery=True)
    logic = ModelLogic(config, pickle.dumps(old))
    out, _ = logic.on_eof()
    windows = [r for item in out if isinstance(item, Rows) and item.table == "calibration_windows" for r in item.rows]
    assert [(w["scope"], w["n"], w["window_end"]) for w in windows] == [("overall", 1, START), ("S0", 1, START)]


_INTERVAL_MS = {"1m": 60_000, "5m": 300_000}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 6), st.sampled_from(["1m", "5m"]), st.integers(1, 3)),
        max_size=14,
    ),
    st.booleans(),
)
def test_inputs_are_taken_in_event_order_whatever_order_they_came_in(
    items: list[tuple[bool, int, str, int]], burst_shaped: bool
) -> None:
    """The model stage takes labels and features by event time (a label from when it is known,
    close_time + horizon, before the features of that instant), stably; a live burst (labels,
    then features, each in order) takes a shortcut. The oracle: a sort on keys computed here."""
    made = []
    for n, (is_label, minute, interval, horizon) in enumerate(items):
        row = {"symbol": f"S{n}", "interval": interval, "close_time": START + minute * 60_000}
        made.append(Label({**row, "horizon": horizon, "label": 1}) if is_label else Features(row))
    if burst_shaped:  # labels first, then features, each in the order of their event time
        made.sort(key=lambda item: (item.__class__ is Features, item[0]["close_time"]))

    def when(item: Features | Label) -> tuple[int, int]:
        row = item[0]
        if isinstance(item, Label):
            return row["close_time"] + row["horizon"] * _INTERVAL_MS[row["interval"]], 0
        return row["close_time"], 1

    expected = [made[i] for i in sorted(range(len(made)), key=lambda i: (when(made[i]), i))]
    logic = ModelLogic(ModelConfig(model_dir="/nonexistent", live=False, recovery=False), None)
    assert [id(item) for item in logic._in_event_order(made)] == [id(item) for item in expected]
