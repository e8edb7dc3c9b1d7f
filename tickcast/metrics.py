"""Prometheus metrics, declared once. Seed names (DESIGN §10) keep their exact names.

prometheus-client appends `_total` to counters itself, so counters are declared
without it and exported as e.g. `sentiment_ingest_total`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram


class BulkRecorder:
    """Hot-path observations queued as arrays and recorded in bulk.

    A per-symbol step observing its few ticks directly costs ~20 µs per call (bucket
    search, per-bucket increments); queueing the array costs ~0.3 µs. Everything queued
    is recorded at the next scrape (see `_FlushBeforeCollect`), so a scrape never misses a
    value, or by `flush()`.
    """

    def __init__(self, record: Callable[[list[Any]], None], max_queued: int = 4096) -> None:
        self._record = record
        self._queued: list[Any] = []
        self._max = max_queued
        self._lock = threading.Lock()

    def add(self, values: Any) -> None:
        self.extend([values])

    def extend(self, items: list[Any]) -> None:
        """`add` for several items under one lock."""
        with self._lock:
            self._queued.extend(items)
            if len(self._queued) < self._max:
                return
            queued, self._queued = self._queued, []
        self._record(queued)

    def flush(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, []
        if queued:
            self._record(queued)


_RECORDERS: list[BulkRecorder] = []


def flush_bulk() -> None:
    for recorder in _RECORDERS:
        recorder.flush()


class _FlushBeforeCollect:
    """Registered before every metric, so the registry (which collects in registration
    order) records the queued observations before it reads any value."""

    def collect(self) -> list[Any]:
        flush_bulk()
        return []


REGISTRY.register(_FlushBeforeCollect())

_MS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000)

# --- seed names ----------------------------------------------------------------------
SENTIMENT_INGEST = Counter("sentiment_ingest", "Sentiment ticks accepted", ["provider"])
SENTIMENT_INGEST_ERRORS = Counter(
    "sentiment_ingest_errors", "Sentiment ticks refused (invalid, duplicate, late, provider disabled)", ["reason"]
)
SENTIMENT_INGEST_LATENCY_MS = Histogram(
    "sentiment_ingest_latency_ms", "ingest_ts - ts of accepted ticks (ms)", buckets=_MS_BUCKETS
)
SENTIMENT_HISTORY_QUERY_LATENCY_MS = Histogram(
    "sentiment_history_query_latency_ms", "GET /api/sentiment/history query time (ms)", buckets=_MS_BUCKETS
)
SENTIMENT_SSE_CLIENTS = Gauge("sentiment_sse_clients", "Connected SSE clients", ["stream"])
FEATURE_JOIN_ATTEMPTS = Counter("feature_sentiment_join_attempts", "Candles joined with sentiment")
FEATURE_JOIN_MISSING = Counter(
    "feature_sentiment_join_missing", "Candles with no usable sentiment (imputed)", ["cause"]
)
CALIBRATION_DRIFT_EVENTS = Counter(
    "inference_calibration_drift_events", "Calibration drift state transitions", ["transition"]
)
CALIBRATION_RETRAIN_RECOMMEND = Counter(
    "calibration_retrain_recommend_events", "Drift recommendations", ["recommendation"]
)
CALIBRATION_RETRAIN_COOLDOWN = Gauge(
    "calibration_retrain_cooldown_seconds", "Seconds until another recommendation is allowed"
)
ML_ACCURACY = Gauge(
    "ml_accuracy",
    "Rolling directional accuracy of the serving model's own labeled predictions, percent (seed); "
    "NaN until it has ACCURACY_MIN_SAMPLES of them",
)
# The seed declares this one a Gauge ('Inference time'): the newest batch's time. The
# distribution is the histogram ml_inference_batch_seconds.
ML_INFERENCE_TIME = Gauge("ml_inference_time_seconds", "Inference time of the newest batch (seconds)")
ML_RETRAINS = Counter("ml_retrains", "Retrain jobs finished", ["trigger", "status"])

# --- operator extras -----------------------------------------------------------------
ML_INFERENCE_BATCH_SECONDS = Histogram(
    "ml_inference_batch_seconds",
    "Inference time per batch (feature matrix + ONNX run or baseline), seconds",
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
)
ML_ACCURACY_HEALTH = Gauge(
    "ml_accuracy_health",
    "Accuracy health of the serving model (1 for its current state: GOOD, WARNING, CRITICAL, INSUFFICIENT_DATA)",
    ["health"],
)
ML_ACCURACY_SAMPLES = Gauge("ml_accuracy_samples", "Labeled predictions of the serving model in its accuracy window")
EMERGENCY_RETRAIN_REQUESTS = Counter(
    "ml_emergency_retrain_requests",
    "Emergency retrain requests by source (api: POST /admin/emergency-retrain; flow: accuracy CRITICAL) and outcome",
    ["source", "outcome"],
)
CALIBRATION_DRIFT_ON = Gauge(
    "calibration_drift_on", "1 while calibration drift is on for the model version", ["model_version"]
)
CALIBRATION_DELTA_ECE = Gauge(
    "calibration_delta_ece", "ΔECE (live − production) of the model version's newest overall window", ["model_version"]
)
REJECTED_RECORDS = Counter("rejected_records", "Records written to rejected_records", ["source", "reason"])
CANDLES_INGESTED = Counter("candles_ingest", "Candles accepted", ["interval"])
PREDICTIONS = Counter("predictions", "Predictions made", ["model_version"])
PREDICTION_FALLBACKS = Counter("prediction_fallbacks", "Predictions served by the baseline", ["reason"])
FEATURE_DRIFT_EVENTS = Counter("feature_drift_events", "Features entering drift", ["feature"])
FEATURE_DRIFT_Z = Gauge(
    "feature_drift_z", "z of the feature's window mean against the serving model's training mean", ["feature"]
)
STORE_WRITES = Counter("store_rows_written", "Rows written to ClickHouse", ["table"])
STORE_WRITE_ERRORS = Counter("store_write_errors", "Failed ClickHouse batch writes", ["table"])
STORE_WRITE_FAILING = Gauge("store_write_failing", "1 while ClickHouse inserts fail (retried until they succeed)")
INGEST_BUFFER_RECORDS = Gauge("ingest_buffer_records", "Accepted HTTP records not yet taken by the flow (embedded)")
INGEST_REFUSED = Counter("ingest_refused", "Ingest requests answered 503", ["reason"])
FLOW_LAG_MS = Gauge("flow_event_lag_ms", "Wall clock minus the newest ingest_ts processed (ms)")
FLOW_LAST_ACTIVITY = Gauge("flow_last_activity_timestamp_seconds", "Wall clock of the flow's last batch")
PROVIDER_DISABLED = Gauge("sentiment_provider_disabled", "1 when a provider is disabled", ["provider"])
MODEL_INFO = Gauge("ml_production_model_info", "Production model in use by the flow", ["version"])
JOBS = Counter("jobs", "Jobs finished", ["kind", "status"])
SQL_QUERIES = Counter(
    "sql_http_queries",
    "Queries on the embedded SQL interface by outcome (ok, readonly, limit, auth, busy, error)",
    ["status"],
)
SQL_QUERY_SECONDS = Histogram(
    "sql_http_query_duration_seconds",
    "Time to answer a query on the SQL interface (queueing included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
SQL_IN_FLIGHT = Gauge("sql_http_queries_in_flight", "Queries being answered by the SQL interface (waiting included)")
SQL_UP = Gauge("sql_http_up", "1 while the embedded SQL interface listens on TICKCAST_SQL_PORT")

# Label values known in advance: their series exist (at 0) from the start, so a rate() or
# an alert sees the first event instead of a series appearing at 1.
KNOWN_LABELS: dict[Any, tuple[tuple[str, ...], ...]] = {
    SENTIMENT_INGEST_ERRORS: (("invalid",), ("provider_disabled",), ("duplicate",), ("late",), ("invalid_http",)),
    FEATURE_JOIN_MISSING: (("no_sentiment",), ("empty_bar",), ("timeout",), ("overflow",)),
    CALIBRATION_DRIFT_EVENTS: (("enter",), ("exit",)),
    CALIBRATION_RETRAIN_RECOMMEND: (("recalibrate",), ("retrain_recommended",)),
    PREDICTION_FALLBACKS: (
        ("no_model",),
        ("corrupt_model",),
        ("inference_error",),
        ("too_few_samples",),
        ("memory_error",),
    ),
    ML_RETRAINS: tuple(
        (trigger, status)
        for trigger in ("manual", "schedule", "drift", "emergency", "api", "cli", "bootstrap")
        for status in ("succeeded", "failed")
    ),
    JOBS: tuple(
        (kind, status) for kind in ("train", "recalibrate", "labeler", "backfill") for status in ("succeeded", "failed")
    ),
    EMERGENCY_RETRAIN_REQUESTS: tuple(
        (source, outcome)
        for source, outcomes in (
            ("api", ("started", "already_running", "unavailable")),
            ("flow", ("started", "already_running", "auto_retrain_off", "error")),
        )
        for outcome in outcomes
    ),
    STORE_WRITE_ERRORS: tuple(
        (table,)
        for table in (
            "sentiment_ticks",
            "sentiment_bars",
            "candles",
            "features",
            "predictions",
            "labels",
            "calibration_windows",
            "drift_events",
            "rejected_records",
            "live_events",
        )
    ),
    ML_ACCURACY_HEALTH: (("GOOD",), ("WARNING",), ("CRITICAL",), ("INSUFFICIENT_DATA",)),
    SENTIMENT_SSE_CLIENTS: (("sentiment",), ("predictions",), ("calibration",), ("events",)),
}


def init_known_series() -> None:
    """Create every known label set's series at zero (idempotent)."""
    for metric, label_sets in KNOWN_LABELS.items():
        for values in label_sets:
            metric.labels(*values)
    ML_ACCURACY_HEALTH.labels("INSUFFICIENT_DATA").set(1)
    ML_ACCURACY.set(float("nan"))
    FEATURE_JOIN_ATTEMPTS.inc(0)


init_known_series()


def observe_many(histogram: Histogram, values: Any) -> None:
    """Observe a whole array at once: the same buckets and sum as one `observe` per value,
    without a Python call per value on the hot path."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)  # noqa: SLF001 - no bulk API upstream
    counts = np.bincount(np.searchsorted(bounds, arr, side="left"), minlength=bounds.size)
    histogram._sum.inc(float(arr.sum()))  # noqa: SLF001
    for i in np.flatnonzero(counts):
        histogram._buckets[i].inc(int(counts[i]))  # noqa: SLF001


def _record_latencies(items: list[Any]) -> None:
    """Each queued item: (ingest_ts, ts, accepted mask | None) of a batch of ticks (ms)."""
    arrays = [ingest_ts - ts if accepted is None else (ingest_ts - ts)[accepted] for ingest_ts, ts, accepted in items]
    observe_many(SENTIMENT_INGEST_LATENCY_MS, np.concatenate(arrays))


def _record_providers(columns: list[Any]) -> None:
    """Each queued item: an Arrow column of provider names, or a plain list of them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts: dict[str, int] = {}
    chunks = [chunk for col in columns if not isinstance(col, list) for chunk in col.chunks]
    if chunks:
        for row in pc.value_counts(pa.chunked_array(chunks)).to_pylist():
            counts[row["values"]] = counts.get(row["values"], 0) + row["counts"]
    for col in columns:
        if isinstance(col, list):
            for name in col:
                counts[name] = counts.get(name, 0) + 1
    for name, n in counts.items():
        SENTIMENT_INGEST.labels(name).inc(n)


# ingest_ts - ts (ms) of accepted ticks (the columns and mask, computed at the scrape), and
# their provider columns (Arrow string arrays or lists)
TICK_LATENCIES = BulkRecorder(_record_latencies)
TICK_PROVIDERS = BulkRecorder(_record_providers)
_RECORDERS += [TICK_LATENCIES, TICK_PROVIDERS]

# --- trading (docs/design.md §11) ---------------------------------------------------------------
TRADING_EQUITY = Gauge("trading_equity", "Portfolio equity marked at the latest candle close (quote)", ["account"])
TRADING_OPEN_POSITIONS = Gauge("trading_open_positions", "Open positions", ["account"])
TRADING_REALIZED_PNL = Gauge(
    "trading_realized_pnl", "Realized PnL of closed positions, before fees (quote)", ["account"]
)
TRADING_FILLS = Counter("trading_fills", "Fills by side and reason", ["side", "reason"])
TRADING_FEES = Counter("trading_fees", "Fees paid (quote)")
TRADING_GUARD_TRIPS = Counter("trading_guard_trips", "Risk guard trips", ["guard"])
TRADING_REFUSED_ENTRIES = Counter("trading_refused_entries", "Entries refused, by cause", ["cause"])
TRADING_GUARD_STATE = Gauge("trading_guard_tripped", "1 while a guard blocks entries", ["guard"])
TRADING_LATE_CANDLES = Counter("trading_late_candles", "Candles that reached the trading stage after their time")
TRADING_BUFFERED = Gauge("trading_buffered_candles", "Candles waiting for the other symbols (event-time order)")
TRADING_FEED_AGE = Gauge("trading_feed_age_seconds", "Wall seconds since the trading stage last processed a candle")
TRADING_ORDER_OVERFLOWS = Counter(
    "trading_order_overflows", "Candle times released early because the ordering buffer was full"
)
TRADING_EXCHANGE_ORDERS = Counter(
    "trading_exchange_orders", "Orders sent to the exchange (testnet/live mode), by mode and answer", ["mode", "status"]
)
