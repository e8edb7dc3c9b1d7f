"""The model stage: one global step (key "model") after the per-symbol join.

Per Bytewax activation it receives every candle that closed together, so inference is
one ONNX run per batch. It pairs each label with the prediction made for the same
candle and folds the pairs into the windowed calibration monitor, the drift state
machine, accuracy health and feature drift at *boundaries* of event time (multiples of
`CALIBRATION_EVAL_EVERY_SECONDS`), so that every replay of the same input — per record,
in batches of any size, over several Kafka partitions, killed and resumed — gives the
same rows:

- A labeled prediction (and a feature row) *enters* at boundary
  E = ⌈max(close_time, known − slack) / every⌉·every, where `known` is the ingest time of
  the record that produced it (the candle that brought the label, the record that
  released the features). Its calibration windows are those ending at E and later.
- Boundary E is processed once no input entering at or before E can still come: the low
  watermark (the newest ingest time every source partition has passed; live: the newest
  `known` seen) is above E + slack, or the input ended. Processing E folds the pairs that
  entered at E into the windows and accuracy in (close_time, symbol, interval) order,
  evaluates the windows if any pair entered (a span without new labels evaluates
  nothing: its windows would only repeat), checks accuracy health and feature drift.
- Boundaries are visited in order, so the drift streaks, the accuracy ring and the
  feature-drift rings see the same sequence whatever the batches were; a replay's cost
  grows with its labels, not with the event-time span they cover.
"""

from __future__ import annotations

import hashlib
import logging
import math
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import orjson
from bytewax.operators import StatefulBatchLogic

from dataflows.decode import ALL_SHARDS
from dataflows.hooks import FlowHooks
from dataflows.items import EVAL_SLACK_MS, Features, Label, LiveEvent, TableRow, TradeBars
from dataflows.outputs import Out
from dataflows.progress import END, Progress
from dataflows.snapshot import freeze, thaw
from models.accuracy import HEALTH_STATES, INSUFFICIENT_DATA, VersionedAccuracy, should_emergency_retrain
from models.baseline import Baseline
from models.calibration_window import WindowedCalibration
from models.drift import DriftConfig, DriftState, drift_step
from models.feature_drift import FeatureDriftMonitor, reference_of
from models.runtime import Predictor
from tickcast import metrics
from tickcast.features import ALL_FEATURES
from tickcast.records import INTERVAL_MS
from tickcast.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    model_dir: str
    min_train_samples: int = 500
    horizon: int = 1
    eval_every_ms: int = 300_000
    window_ms: int = 21_600_000
    eval_slack_ms: int = EVAL_SLACK_MS
    bins: int = 10
    z: float = 1.96
    min_bin_samples: int = 30
    drift: DriftConfig = field(default_factory=DriftConfig)
    monitor_enabled: bool = True
    accuracy_good: float = 0.70
    accuracy_warning: float = 0.50
    accuracy_window: int = 500
    accuracy_min_samples: int = 100
    emergency_cooldown_s: int = 21_600
    feature_window: int = 200
    feature_z: float = 3.0
    auto_retrain: bool = False
    live: bool = True
    refresh_interval_s: float = 1.0
    recovery: bool = True
    # Replays: the source partitions whose progress (dataflows/progress.py) bounds what can
    # still come; empty: the newest ingest time seen does (one ordered source, or live).
    partitions: tuple[str, ...] = ()
    trading_interval: str | None = None  # emit ("trade", [TradeBar]) for candles of this interval

    @classmethod
    def from_settings(
        cls,
        s: Settings,
        *,
        live: bool,
        recovery: bool = True,
        partitions: tuple[str, ...] = (),
        trading: bool = False,
    ) -> ModelConfig:
        return cls(
            partitions=partitions,
            recovery=recovery,
            model_dir=s.MODEL_STORE_DIR,
            min_train_samples=s.MIN_TRAIN_SAMPLES,
            horizon=s.LABEL_HORIZON,
            eval_every_ms=s.CALIBRATION_EVAL_EVERY_SECONDS * 1000,
            window_ms=s.CALIBRATION_MONITOR_WINDOW_SECONDS * 1000,
            bins=s.CALIBRATION_BINS,
            z=s.CALIBRATION_WILSON_Z,
            min_bin_samples=s.CALIBRATION_MIN_BIN_SAMPLES,
            drift=DriftConfig(
                ece_drift_abs=s.CALIBRATION_MONITOR_ECE_DRIFT_ABS,
                ece_drift_rel=s.CALIBRATION_MONITOR_ECE_DRIFT_REL,
                abs_streak_trigger=s.CALIBRATION_MONITOR_ABS_STREAK_TRIGGER,
                rel_streak_trigger=s.CALIBRATION_MONITOR_REL_STREAK_TRIGGER,
                abs_delta_multiplier=s.CALIBRATION_ABS_DELTA_MULTIPLIER,
                hysteresis_enter=s.CALIBRATION_HYSTERESIS_ENTER,
                hysteresis_exit=s.CALIBRATION_HYSTERESIS_EXIT,
                ema_alpha=s.CALIBRATION_HYSTERESIS_EMA_ALPHA,
                recommend_cooldown_s=s.CALIBRATION_RECOMMEND_COOLDOWN_SECONDS,
                gate_brier_delta=s.CALIBRATION_GATE_BRIER_DELTA,
                gate_prauc_delta=s.CALIBRATION_GATE_PRAUC_DELTA,
                min_samples=s.CALIBRATION_DRIFT_MIN_SAMPLES,
            ),
            monitor_enabled=s.CALIBRATION_MONITOR_ENABLED,
            accuracy_good=s.ACCURACY_GOOD,
            accuracy_warning=s.ACCURACY_WARNING,
            accuracy_window=s.ACCURACY_WINDOW,
            accuracy_min_samples=s.ACCURACY_MIN_SAMPLES,
            emergency_cooldown_s=s.EMERGENCY_RETRAIN_COOLDOWN_SECONDS,
            feature_window=s.DRIFT_WINDOW,
            feature_z=s.DRIFT_Z_THRESHOLD,
            auto_retrain=s.AUTO_RETRAIN_ENABLED,
            live=live,
            trading_interval=s.TRADING_INTERVAL if trading else None,
        )


@dataclass
class Boundary:
    """What entered at one boundary of event time and waits for it to be processed."""

    # (close_time, symbol, interval, prob, label, model_version) of each labeled prediction
    pairs: list[tuple[int, str, str, float, int, str]] = field(default_factory=list)
    # feature rows (baseline or model): (model_version, close_times, symbols, intervals,
    # values n×len(ALL_FEATURES))
    features: list[tuple[str, np.ndarray, list[str], list[str], np.ndarray]] = field(default_factory=list)


@dataclass
class ModelState:
    baseline: Baseline = field(default_factory=Baseline)
    predictions: dict[str, dict[int, tuple[float, str]]] = field(default_factory=dict)
    windows: dict[str, WindowedCalibration] = field(default_factory=dict)
    drift: dict[str, DriftState] = field(default_factory=dict)
    accuracy: VersionedAccuracy | None = None  # per model version (their own labeled predictions)
    symbol_index: dict[str, int] = field(default_factory=dict)
    feature_drift: FeatureDriftMonitor | None = None  # rings of every feature row, drift state
    serving_version: str = ""
    evaluation_due: bool = False  # live: a boundary is ready to be processed
    labels_due: list[tuple[dict[str, Any], int]] = field(default_factory=list)  # live: (label, known), not paired
    # live: feature rows not yet in their boundary: (version, rows, known, values of ALL_FEATURES)
    served_due: list[tuple[str, list[dict[str, Any]], list[int], np.ndarray]] = field(default_factory=list)
    boundaries: dict[int, Boundary] = field(default_factory=dict)  # entered, not yet processed
    newest_known: int = -(2**62)  # the newest `known` of any input
    processed_through: int = -(2**62)  # the newest boundary processed
    progress: dict[str, dict[str, int]] = field(default_factory=dict)  # replays: partition -> shard -> newest


def _thawed(state: ModelState) -> ModelState:
    """A state from an older snapshot gets the fields added since, with their defaults."""
    fresh = ModelState()
    for name, value in vars(fresh).items():
        if not hasattr(state, name):
            setattr(state, name, value)
    # labels waiting for their pairing were bare rows: known from their event key on
    state.labels_due = [
        due if isinstance(due, tuple) else (due, due["close_time"] + due["horizon"] * INTERVAL_MS[due["interval"]])
        for due in state.labels_due
    ]
    return state


def _predictor(config: ModelConfig, state: ModelState, predictors: dict[str, Predictor]) -> Predictor:
    predictor = predictors.get(config.model_dir)
    if predictor is None:
        predictor = Predictor(
            config.model_dir,
            min_train_samples=config.min_train_samples,
            refresh_interval_s=config.refresh_interval_s,
        )
        predictors[config.model_dir] = predictor
    predictor.baseline = state.baseline  # the baseline's rolling rates live in the snapshot
    return predictor


def _feature_values(rows: list[dict[str, Any]], names: Sequence[str]) -> list[Any]:
    """Each row's values of `names`, in order; None for a feature a row does not have."""
    if not names:
        return [[] for _ in rows]
    pick = operator.itemgetter(*names)
    try:
        values = [pick(row) for row in rows]  # every feature row has every name: C-speed
    except KeyError:
        return [[row.get(n) for n in names] for row in rows]
    return values if len(names) > 1 else [[v] for v in values]


def _ascending(values: list[int]) -> bool:
    return all(a <= b for a, b in zip(values, values[1:]))


def _event_id(*parts: Any) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


# Features | Label (row, known): known = ingest_ts of the record that produced it (dataflows/items.py);
# Progress(partition, shard, newest): replays, see dataflows/progress.py
ModelItem = Features | Label | Progress
_FEATURE_INDEX = {name: j for j, name in enumerate(ALL_FEATURES)}


class ModelLogic(StatefulBatchLogic[list[ModelItem], tuple[Any, ...], bytes | None]):
    def __init__(self, config: ModelConfig, state: bytes | ModelState | None, hooks: FlowHooks | None = None) -> None:
        self.config = config
        self.hooks = hooks or FlowHooks()  # tests: no job starter, a predictor of its own
        self.state = _thawed(thaw(state) or ModelState())
        if not isinstance(self.state.accuracy, VersionedAccuracy):
            # (a snapshot from before per-version health held one ring for every version: dropped)
            self.state.accuracy = VersionedAccuracy(
                config.accuracy_window,
                good=config.accuracy_good,
                warning=config.accuracy_warning,
                min_samples=config.accuracy_min_samples,
            )
        if not isinstance(getattr(self.state, "feature_drift", None), FeatureDriftMonitor):
            self.state.feature_drift = FeatureDriftMonitor(config.feature_window, config.feature_z)
        self.predictor = _predictor(config, self.state, self.hooks.predictors)

    def snapshot(self) -> bytes | None:
        return freeze(self.state, enabled=self.config.recovery)

    @property
    def _accuracy(self) -> VersionedAccuracy:
        accuracy = self.state.accuracy
        assert accuracy is not None  # set by __init__ (None only in a ModelState not yet thawed)
        return accuracy

    @property
    def _feature_monitor(self) -> FeatureDriftMonitor:
        monitor = self.state.feature_drift
        assert monitor is not None  # set by __init__, as _accuracy
        return monitor

    def on_batch(self, values: list[list[ModelItem]]) -> tuple[list[tuple[Any, ...]], bool]:
        """Each value is one upstream activation's model inputs (`Out.model`)."""
        out = Out()
        items: list[Any] = [item for batch in values for item in batch]
        marks: list[Progress] = [item for item in items if item.__class__ is Progress]  # replays only
        if marks:
            items = [item for item in items if item.__class__ is not Progress]
        # Event-time order: a label counts from when it became known (close_time + h),
        # ties before the features of that instant. The baseline a candle sees is then
        # the same whatever the batch boundaries were (replay == live).
        ordered = self._in_event_order(items)
        newest = self.state.newest_known
        i = 0
        while i < len(ordered):
            kind = ordered[i].__class__
            j = i
            while j < len(ordered) and ordered[j].__class__ is kind:
                j += 1
            rows = [item[0] for item in ordered[i:j]]
            given = [item[1] for item in ordered[i:j]]
            # inputs without an ingest time are known at their event time
            known = [self._known(item) for item in ordered[i:j]] if None in given else cast(list[int], given)
            newest = max(newest, max(known))
            if kind is Features:
                self._infer(rows, known, out)
            else:
                if self.state.labels_due or self.state.evaluation_due or self.state.served_due:
                    self._settle(out)  # live: what became due before these labels
                # the baseline a later candle sees includes them
                self.state.baseline.extend([row["symbol"] for row in rows], [row["label"] for row in rows])
                if self.config.live:
                    self.state.labels_due.extend(zip(rows, known, strict=True))
                else:
                    self._pair(rows, known)
            i = j
        # what can still come is known only now: every input of this activation is in its boundary
        self.state.newest_known = newest
        for mark in marks:
            self.state.progress.setdefault(mark.partition, {})[mark.shard] = mark.newest
        if self.config.live:
            self.state.evaluation_due = self._ready()
        else:
            self._process_ready(out)
        return out.done(), StatefulBatchLogic.RETAIN

    # Live, labels are paired with their predictions and boundaries that became ready are
    # processed in the next activation (or before the next labels are added, whichever
    # comes first): the windows get the same labels either way, and the pairing (~4 ms per
    # 1,000 labels) and a 1,000-symbol evaluation (~30 ms every 5 minutes of event time) do
    # not hold up the predictions of the candles that closed with them.
    def notify_at(self) -> datetime | None:
        due = self.state.evaluation_due or self.state.labels_due or self.state.served_due
        return datetime.now(UTC) if due else None

    def on_notify(self) -> tuple[list[tuple[Any, ...]], bool]:
        out = Out()
        self._settle(out)
        return out.done(), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[tuple[Any, ...]], bool]:
        out = Out()
        self._settle(out, final=True)  # nothing more can come: every boundary is complete
        return out.done(), StatefulBatchLogic.RETAIN

    def _settle(self, out: list[tuple[Any, ...]], *, final: bool = False) -> None:
        if self.state.served_due:
            served, self.state.served_due = self.state.served_due, []
            for chunk in served:
                self._enter_features(*chunk)
        if self.state.labels_due:
            due, self.state.labels_due = self.state.labels_due, []
            self._pair([row for row, _ in due], [known for _, known in due])
        self._process_ready(out, final=final)

    def _in_event_order(self, items: list[Features | Label]) -> list[Features | Label]:
        """`items` sorted (stably) by `_event_key`. A live burst is a run of labels and a run of
        features, each in order, the labels known no later than the features: then the order is
        the labels, then the features, found with two passes instead of a key call per item."""
        labels = [item for item in items if item.__class__ is Label]
        features = [item for item in items if item.__class__ is not Label]
        label_at = [  # `_event_key`'s times, inline: a call per item is what this saves
            row["close_time"] + row["horizon"] * INTERVAL_MS[row["interval"]] for row in (item[0] for item in labels)
        ]
        feature_at = [item[0]["close_time"] for item in features]
        if (
            _ascending(label_at)
            and _ascending(feature_at)
            and (not label_at or not feature_at or label_at[-1] <= feature_at[0])  # ties: labels first
        ):
            return labels + features
        return sorted(items, key=self._event_key)

    def _event_key(self, item: Features | Label) -> tuple[int, int]:
        row = item[0]
        if item.__class__ is Label:
            return row["close_time"] + row["horizon"] * INTERVAL_MS[row["interval"]], 0
        return row["close_time"], 1

    def _known(self, item: Features | Label) -> int:
        """The ingest time of the record that produced the item (inputs without one: their event time)."""
        known = item[1]
        return known if known is not None else self._event_key(item)[0]

    def _entry(self, close_time: int, known: int) -> int:
        """The boundary at which an input enters the windows (module doc)."""
        every = self.config.eval_every_ms
        return -(-max(close_time, known - self.config.eval_slack_ms) // every) * every

    def _low_watermark(self) -> int:
        """Inputs known before this time have all arrived."""
        if not self.config.partitions:
            return self.state.newest_known
        low = END
        for partition in self.config.partitions:
            shards = self.state.progress.get(partition, {})
            if len(shards) < len(ALL_SHARDS):
                return -(2**62)
            low = min(low, *shards.values())
        return low

    def _ready(self) -> bool:
        boundaries = self.state.boundaries
        return bool(boundaries) and min(boundaries) + self.config.eval_slack_ms < self._low_watermark()

    def _process_ready(self, out: list[tuple[Any, ...]], *, final: bool = False) -> None:
        self.state.evaluation_due = False
        boundaries = self.state.boundaries
        low = END if final else self._low_watermark()
        # One sort, not min() per boundary: a replay of sparse history holds thousands of
        # boundaries at once (min() each time made it quadratic). `_process` adds none.
        for at in sorted(boundaries):
            if not final and at + self.config.eval_slack_ms >= low:
                return
            self._process(at, boundaries.pop(at), out)

    # --- inference ------------------------------------------------------------------------
    def _infer(self, rows: list[dict[str, Any]], known: list[int], out: Out) -> None:
        started = time.perf_counter()
        # refresh() is two stat() calls; it picks up a promotion from the next candle on.
        self.predictor.refresh()
        names = self.predictor.feature_names
        # None (a missing feature) becomes NaN in the float conversion
        # One matrix of every stored feature (the drift monitor sees every row, baseline or
        # model, as GET /api/drift/features does); the model's columns are taken from it.
        every = np.array(_feature_values(rows, ALL_FEATURES), dtype=np.float64).reshape(len(rows), len(ALL_FEATURES))
        index = [_FEATURE_INDEX.get(name) for name in names]
        if None in index:  # a model with a feature the table does not hold: take its own values
            X64 = np.array(_feature_values(rows, names), dtype=np.float64).reshape(len(rows), len(names))
        else:
            X64 = every[:, cast(list[int], index)]
        X = X64.astype(np.float32)
        symbols = [row["symbol"] for row in rows]
        # A one-row batch scores bit for bit like the same row in a larger one: the ONNX
        # scorer handles onnxruntime's 1-row kernel (models/onnx_export.py, OnnxScorer).
        probs, version, reason = self.predictor.predict(symbols, X)
        elapsed = time.perf_counter() - started
        metrics.ML_INFERENCE_TIME.set(elapsed)  # the seed's gauge: the newest batch
        metrics.ML_INFERENCE_BATCH_SECONDS.observe(elapsed)
        metrics.PREDICTIONS.labels(version).inc(len(rows))
        if reason:
            metrics.PREDICTION_FALLBACKS.labels(reason).inc(len(rows))
        if version != self.state.serving_version:
            log.info("predictions now served by model %s (was %s)", version, self.state.serving_version or "-")
            if self.config.live:
                data = {"kind": "model_switch", "from": self.state.serving_version, "to": version, "reason": reason}
                out.append(LiveEvent("events", data, None, rows[0]["close_time"]))
            metrics.MODEL_INFO.labels(version).set(1)
            if self.state.serving_version:
                metrics.MODEL_INFO.labels(self.state.serving_version).set(0)
            self.state.serving_version = version
            self._publish_accuracy()  # the new version's own record (INSUFFICIENT_DATA at first)
        latency_ms = elapsed * 1000.0
        horizon, fallback, keep = self.config.horizon, reason or "", 4 * self.config.horizon + 16
        prob_list = probs.tolist()
        preds = [
            {
                "symbol": row["symbol"],
                "interval": row["interval"],
                "close_time": row["close_time"],
                "horizon": horizon,
                "model_version": version,
                "prob": prob,
                "fallback_reason": fallback,
                "latency_ms": latency_ms,
            }
            for row, prob in zip(rows, prob_list, strict=True)
        ]
        # what out.append(TableRow(...)) / out.append(LiveEvent(...)) do, a batch at a time
        out.tables["predictions"].extend(preds)
        if self.config.live:
            out.events.extend([LiveEvent("predictions", p, p["symbol"], p["close_time"]) for p in preds])
        rings = self.state.predictions
        for symbol, row, prob in zip(symbols, rows, prob_list, strict=True):
            ring = rings.get(symbol)
            if ring is None:
                ring = rings[symbol] = {}
            ring[row["close_time"]] = (prob, version)
            if len(ring) > keep:
                del ring[min(ring)]
        if self.config.trading_interval is not None:
            self._trade_bars(rows, prob_list, version, reason or "", out)
        # every row's features reach the feature-drift rings at their boundary (module doc);
        # live, after the predictions are out
        chunk = (version, rows, known, every)
        if self.config.live:
            self.state.served_due.append(chunk)
        else:
            self._enter_features(*chunk)

    def _enter_features(self, version: str, rows: list[dict[str, Any]], known: list[int], every: np.ndarray) -> None:
        close = np.fromiter((row["close_time"] for row in rows), np.int64, len(rows))
        entry = self._entries(close, np.asarray(known, np.int64))
        for at in np.unique(entry).tolist():
            sel = np.flatnonzero(entry == at)
            take = sel.tolist()
            chunk = (version, close[sel], [rows[k]["symbol"] for k in take], [rows[k]["interval"] for k in take])
            self._boundary(at).features.append((*chunk, every[sel]))

    def _entries(self, close: np.ndarray, known: np.ndarray) -> np.ndarray:
        every = self.config.eval_every_ms
        return -(-np.maximum(close, known - self.config.eval_slack_ms) // every) * every

    def _boundary(self, at: int) -> Boundary:
        boundary = self.state.boundaries.get(at)
        if boundary is None:
            boundary = self.state.boundaries[at] = Boundary()
        return boundary

    def _trade_bars(
        self, rows: list[dict[str, Any]], probs: list[float], version: str, reason: str, out: list[tuple[Any, ...]]
    ) -> None:
        """The trading stage's input: one TradeBars([TradeBar, ...]) item per inference batch."""
        from dataflows.trading.stage import trade_bars

        interval = self.config.trading_interval
        assert interval is not None  # the caller checks
        bars = trade_bars(rows, probs, version, reason, interval)
        if bars:
            out.append(TradeBars(bars))

    def _feature_drift(
        self, at_ms: int, chunks: list[tuple[str, np.ndarray, list[str], list[str], np.ndarray]], out: list[Any]
    ) -> None:
        """Boundary `at_ms`: its feature rows into the drift rings in (close_time, symbol,
        interval) order, then, when a model served the last of them, the rings against that
        model's training statistics (models/feature_drift.py)."""
        versions = [version for version, close, *_ in chunks for _ in range(close.size)]
        close = np.concatenate([c[1] for c in chunks])
        symbols = np.asarray([s for c in chunks for s in c[2]], dtype=str)
        intervals = np.asarray([i for c in chunks for i in c[3]], dtype=str)
        order = np.lexsort((intervals, symbols, close))
        ordered = np.concatenate([c[4] for c in chunks])[order]
        monitor = self._feature_monitor
        monitor.add({name: ordered[:, j] for j, name in enumerate(ALL_FEATURES)})
        version = versions[int(order[-1])]
        metadata = self._reference(version)
        if metadata is None:  # the baseline (or a version removed since) has no training statistics
            return
        reference = reference_of(metadata)
        for reading in monitor.evaluate(version, reference):
            metrics.FEATURE_DRIFT_Z.labels(reading.name).set(reading.z)
            if reading.transition is None:
                continue
            mu, sigma = reference[reading.name]
            kind = "feature_drift" if reading.transition == "enter" else "feature_drift_exit"
            if reading.transition == "enter":
                metrics.FEATURE_DRIFT_EVENTS.labels(reading.name).inc()
            self._drift_event(
                kind,
                at_ms,
                version,
                "overall",
                reading.name,
                reading.z,
                self.config.feature_z,
                {"window": reading.n, "mean": reading.mean, "train_mean": mu, "train_std": sigma},
                out,
            )

    # --- labels, calibration ------------------------------------------------------------------
    def _pair(self, labels: list[dict[str, Any]], known: list[int]) -> None:
        """Labels (already in the baseline) with their predictions, into their boundary."""
        for row, k in zip(labels, known, strict=True):
            pred = self.state.predictions.get(row["symbol"], {}).pop(row["close_time"], None)
            if pred is None:
                continue
            prob, version = pred
            pair = (row["close_time"], row["symbol"], row["interval"], prob, int(row["label"]), version)
            self._boundary(self._entry(row["close_time"], k)).pairs.append(pair)

    def _publish_accuracy(self) -> None:
        """The serving version's own accuracy and health on the seed gauge (NaN = not enough data)."""
        state = self._accuracy.state(self.state.serving_version)
        accuracy = state.accuracy if state.health != INSUFFICIENT_DATA else None
        metrics.ML_ACCURACY.set(100.0 * accuracy if accuracy is not None else math.nan)
        metrics.ML_ACCURACY_SAMPLES.set(state.n)
        for health in HEALTH_STATES:
            metrics.ML_ACCURACY_HEALTH.labels(health).set(1.0 if health == state.health else 0.0)

    def _process(self, at_ms: int, boundary: Boundary, out: list[tuple[Any, ...]]) -> None:
        """Boundary `at_ms`: fold what entered there in a canonical order, then evaluate."""
        self.state.processed_through = at_ms
        if boundary.pairs:
            pairs = sorted(boundary.pairs)
            by_version: dict[str, list[tuple[int, int, float, int]]] = {}
            for close_time, symbol, _interval, prob, label, version in pairs:
                idx = self.state.symbol_index.setdefault(symbol, len(self.state.symbol_index))
                by_version.setdefault(version, []).append((close_time, idx, prob, label))
            for version, items in sorted(by_version.items()):
                window = self.state.windows.get(version)
                if window is None:
                    window = self.state.windows[version] = WindowedCalibration(
                        self.config.window_ms, model_version=version
                    )
                ts_col, idx_col, prob_col, label_col = (np.array(col) for col in zip(*items, strict=True))
                window.add(ts_col, idx_col, prob_col, label_col)
                self._accuracy.add(version, prob_col, label_col)  # each version's health from its own predictions
            self._publish_accuracy()
            if self.config.monitor_enabled:
                self._evaluate(at_ms, out)
        if boundary.features:
            self._feature_drift(at_ms, boundary.features, out)

    def _evaluate(self, at_ms: int, out: list[tuple[Any, ...]]) -> None:
        names = {i: s for s, i in self.state.symbol_index.items()}
        for version, window in self.state.windows.items():
            result = window.evaluate(
                at_ms, self.config.window_ms, self.config.bins, self.config.z, self.config.min_bin_samples
            )
            overall = result["overall"]
            if overall["n"] == 0:
                continue
            reference = self._reference(version)
            row = self._window_row(version, "overall", at_ms, overall, reference)
            self._drift(version, at_ms, overall, reference, row, out)
            out.append(TableRow("calibration_windows", row))
            if self.config.live:
                out.append(LiveEvent("calibration", {**row, "bins": overall["bins"]}, None, at_ms))
            for idx, report in result["per_symbol"].items():
                out.append(
                    TableRow("calibration_windows", self._window_row(version, names[idx], at_ms, report, reference))
                )
        self._accuracy_health(at_ms, out)

    def _reference(self, version: str) -> dict[str, Any] | None:
        if version == "baseline":
            return None
        model = self.predictor.loaded
        if model is not None and model.version == version:
            return model.metadata
        try:
            return self.predictor.registry.metadata(version)
        except Exception:  # noqa: BLE001 - a removed version has no reference any more
            return None

    def _window_row(
        self, version: str, scope: str, at_ms: int, report: dict[str, Any], reference: dict[str, Any] | None
    ) -> dict[str, Any]:
        # Directional accuracy is tracked per version over its last ACCURACY_WINDOW labeled
        # predictions (accuracy health), so only the overall row carries it, and only once
        # the version has ACCURACY_MIN_SAMPLES of its own.
        acc = None
        if scope == "overall":
            own = self._accuracy.state(version)
            acc = own.accuracy if own.health != INSUFFICIENT_DATA else None
        ece_prod = _num(reference.get("ece_prod")) if reference else None
        return {
            "model_version": version,
            "scope": scope,
            "window_end": at_ms,
            "window_seconds": self.config.window_ms // 1000,
            "n": report["n"],
            "ece": _num(report["ece"]),
            "brier": _num(report["brier"]),
            "roc_auc": _num(report["roc_auc"]),
            "pr_auc": _num(report["pr_auc"]),
            "accuracy": acc,
            "ece_prod": ece_prod,
            "delta_ece": None if ece_prod is None or report["ece"] is None else report["ece"] - ece_prod,
            "abs_streak": 0,
            "rel_streak": 0,
            "delta_ece_ema": None,
            "drift_on": 0,
            "state": "no_reference" if reference is None else "not_evaluated",
            "recommendation": "",
            "cooldown_remaining_s": 0.0,
            "bins": orjson.dumps(report["bins"]).decode(),
        }

    def _drift(
        self,
        version: str,
        at_ms: int,
        report: dict[str, Any],
        reference: dict[str, Any] | None,
        row: dict[str, Any],
        out: list[tuple[Any, ...]],
    ) -> None:
        if reference is None:
            return
        self.state.drift[version], decision = drift_step(
            self.config.drift,
            self.state.drift.get(version) or DriftState(),
            at_ms,
            n=report["n"],
            ece_live=report["ece"],
            brier_live=report["brier"],
            pr_auc_live=report["pr_auc"],
            ece_prod=_num(reference.get("ece_prod")),
            brier_prod=_num(reference.get("brier_prod")),
            pr_auc_prod=_num(reference.get("pr_auc_prod")),
        )
        row.update(
            abs_streak=decision.abs_streak,
            rel_streak=decision.rel_streak,
            delta_ece_ema=decision.delta_ece_ema,
            drift_on=int(decision.drift_on),
            state=decision.skipped_reason or ("drift" if decision.drift_on else "ok"),
            recommendation=decision.recommendation or "",
            cooldown_remaining_s=decision.cooldown_remaining_s,
        )
        metrics.CALIBRATION_RETRAIN_COOLDOWN.set(decision.cooldown_remaining_s)
        metrics.CALIBRATION_DRIFT_ON.labels(version).set(1.0 if decision.drift_on else 0.0)
        if decision.delta_ece is not None and decision.skipped_reason is None:
            metrics.CALIBRATION_DELTA_ECE.labels(version).set(decision.delta_ece)
        details = {
            "n": report["n"],
            "ece": report["ece"],
            "brier": report["brier"],
            "pr_auc": report["pr_auc"],
            "delta_ece_ema": decision.delta_ece_ema,
            "abs_streak": decision.abs_streak,
            "rel_streak": decision.rel_streak,
            "strong": decision.strong,
        }
        if decision.transition:
            metrics.CALIBRATION_DRIFT_EVENTS.labels(decision.transition).inc()
            self._drift_event(
                f"calibration_drift_{decision.transition}",
                at_ms,
                version,
                "overall",
                "ece",
                decision.delta_ece,
                self.config.drift.hysteresis_enter,
                details,
                out,
            )
        if decision.recommendation:
            metrics.CALIBRATION_RETRAIN_RECOMMEND.labels(decision.recommendation).inc()
            self._drift_event(
                decision.recommendation,
                at_ms,
                version,
                "overall",
                "ece",
                decision.delta_ece,
                self.config.drift.ece_drift_abs,
                details,
                out,
            )
            if self.config.auto_retrain and self.config.live and self.hooks.start_job is not None:
                kind = "train" if decision.recommendation == "retrain_recommended" else "recalibrate"
                try:
                    self.hooks.start_job(kind, {"reason": decision.recommendation, "model_version": version}, "drift")
                except Exception:  # noqa: BLE001 - a job problem must not stop the flow
                    log.exception("could not start the %s job recommended by drift", kind)

    def _accuracy_health(self, at_ms: int, out: list[tuple[Any, ...]]) -> None:
        version = self.state.serving_version
        if version in ("", "baseline"):
            return  # the baseline is not retrained; its accuracy is the base rate
        # The serving version's own record only: a model promoted a minute ago is
        # INSUFFICIENT_DATA until it has ACCURACY_MIN_SAMPLES labeled predictions of its own.
        acc_state = self._accuracy.state(version)
        if should_emergency_retrain(acc_state, at_ms, self.config.emergency_cooldown_s):
            self._accuracy.record_emergency_retrain(at_ms)
            self._drift_event(
                "accuracy_critical",
                at_ms,
                version,
                "overall",
                "accuracy",
                acc_state.accuracy,
                self.config.accuracy_warning,
                {"n": acc_state.n, "min_samples": acc_state.min_samples},
                out,
            )
            log.warning(
                "accuracy CRITICAL for model %s: %.1f %% over its last %d labeled predictions",
                version,
                100.0 * (acc_state.accuracy or 0.0),
                acc_state.n,
            )
            self._request_emergency_retrain(version)

    def _request_emergency_retrain(self, version: str) -> None:
        if not (self.config.auto_retrain and self.config.live and self.hooks.start_job is not None):
            metrics.EMERGENCY_RETRAIN_REQUESTS.labels("flow", "auto_retrain_off").inc()
            return
        try:
            job_id = self.hooks.start_job(
                "train", {"reason": "accuracy_critical", "model_version": version}, "emergency"
            )
        except Exception:  # noqa: BLE001 - a job problem must not stop the flow
            metrics.EMERGENCY_RETRAIN_REQUESTS.labels("flow", "error").inc()
            log.exception("could not start the emergency retrain")
            return
        outcome = "already_running" if getattr(job_id, "already_running", False) else "started"
        metrics.EMERGENCY_RETRAIN_REQUESTS.labels("flow", outcome).inc()
        if outcome == "already_running":
            log.warning("emergency retrain not started: train job %s is already running", job_id)

    def _drift_event(
        self,
        kind: str,
        ts: int,
        version: str,
        scope: str,
        feature: str,
        value: float | None,
        threshold: float | None,
        details: dict[str, Any],
        out: list[tuple[Any, ...]],
    ) -> None:
        row = {
            "event_id": _event_id(kind, ts, version, scope, feature),
            "kind": kind,
            "ts": ts,
            "model_version": version,
            "scope": scope,
            "feature": feature,
            "value": _num(value),
            "threshold": threshold,
            "details": orjson.dumps(details).decode(),
        }
        out.append(TableRow("drift_events", row))
        if self.config.live:
            out.append(LiveEvent("events", {**row, "details": details}, None, ts))
