"""Every setting of DESIGN.md and the seeds, declared once with its type, range and seed default.

Names are the environment variables themselves (seed names, no prefix), so an
error can name exactly what the operator has to fix. `load_settings()` is
called once at start-up; a bad value stops start-up with `SettingsError`.
"""

from __future__ import annotations

import json
import re
import tempfile
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tickcast.records import PROVIDER_RE

if TYPE_CHECKING:
    from tickcast.store import StoreMode

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class SettingsError(ValueError):
    """A setting has a value the system cannot run with; the message names it."""


def parse_duration_ms(text: str) -> int:
    """'5m' -> 300000. Units: ms, s, m, h, d.

    >>> parse_duration_ms("15m")
    900000
    """
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"expected a duration like 30s, 5m, 1h or 1d, got {text!r}")
    value = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if value <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return value


def _duration_list(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(item.strip() for item in items if item.strip())
    if not names:
        raise ValueError("expected a comma-separated list of durations like 5m,15m,60m")
    for name in names:
        parse_duration_ms(name)
    return names


def _duration(value: str) -> str:
    parse_duration_ms(value)
    return value.strip()


def _json_weights(value: Any) -> dict[str, float]:
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise ValueError(f'expected a JSON object like {{"newsapi": 0.8}}, got {value!r}')
    out: dict[str, float] = {}
    for key, weight in data.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"weight for {key!r} must be a number, got {weight!r}")
        if weight < 0:
            raise ValueError(f"weight for {key!r} must be >= 0, got {weight}")
        out[str(key)] = float(weight)
    return out


def _csv(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


_ORIGIN_RE = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}))(:[0-9]{1,5})?$")


def _origins(value: Any) -> tuple[str, ...]:
    origins = _csv(value)
    for origin in origins:
        if not _ORIGIN_RE.match(origin):
            raise ValueError(
                f"{origin!r} is not an origin like https://dash.example.com or http://localhost:3000 "
                "(scheme://host[:port], no path, no trailing slash, no '*')"
            )
    return origins


def _store_url(value: str) -> str:
    if not re.match(r"^(chdb://|https?://)", value):
        raise ValueError(
            f"expected chdb:///path/to/dir (embedded) or http(s)://host:8123 (ClickHouse server), got {value!r}"
        )
    return value


DurationList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_duration_list)]
Duration = Annotated[str, AfterValidator(_duration)]
Weights = Annotated[dict[str, float], NoDecode, BeforeValidator(_json_weights)]
CsvList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)]
Origins = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_origins)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    """Field name == environment variable name."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # --- deployment -------------------------------------------------------------
    TICKCAST_CLICKHOUSE_URL: Annotated[str, AfterValidator(_store_url)] = "chdb:///./var/clickhouse"
    TICKCAST_KAFKA_BOOTSTRAP: str | None = None
    TICKCAST_TOPIC_TICKS: str = "sentiment.ticks"
    TICKCAST_TOPIC_CANDLES: str = "market.candles"
    # Live fan-out (distributed mode): one topic per live stream, `live_topics`.
    TICKCAST_TOPIC_SENTIMENT: str = "sentiment.live"
    TICKCAST_TOPIC_PREDICTIONS: str = "predictions"
    TICKCAST_TOPIC_CALIBRATION: str = "calibration.events"
    TICKCAST_TOPIC_EVENTS: str = "system.events"
    TICKCAST_TOPIC_TRADING: str = "trading.events"
    # API replicas: a POST whose records Kafka has not acknowledged within this is answered 503.
    KAFKA_INGEST_TIMEOUT_S: Annotated[float, Field(gt=0, le=300)] = 10.0
    # A live Kafka partition pair releases one topic's messages ahead of the other's once the
    # other has delivered nothing for this long (dataflows/kafka/pair_source.py, KafkaPairSource).
    TICKCAST_KAFKA_IDLE_RELEASE_MS: Annotated[int, Field(ge=10, le=600_000)] = 2_000
    TICKCAST_API_HOST: str = "127.0.0.1"
    TICKCAST_API_PORT: Annotated[int, Field(ge=1, le=65535)] = 8000
    TICKCAST_FLOW_METRICS_PORT: Annotated[int, Field(ge=0, le=65535)] = 9100  # `tickcast flow` /metrics; 0 = off
    TICKCAST_LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    TICKCAST_RECOVERY_DIR: str | None = None
    TICKCAST_SNAPSHOT_SECONDS: Annotated[float, Field(gt=0)] = 5.0
    TICKCAST_SIM_SYMBOLS: PositiveInt = 5
    TICKCAST_SIM_SPEED: Annotated[float, Field(gt=0, le=10_000)] = 1.0
    TICKCAST_SIM_BACKFILL_HOURS: Annotated[float, Field(ge=0, le=24 * 30)] = 48.0
    TICKCAST_SIM_SEED: int = 0
    TICKCAST_WRITE_BATCH_ROWS: PositiveInt = 5_000
    TICKCAST_WRITE_FLUSH_MS: Annotated[int, Field(ge=10, le=60_000)] = 500
    TICKCAST_REPLAY_BATCH: Annotated[int, Field(ge=1, le=5_000_000)] = 200_000
    # Embedded ingest durability (docs/reliability.md): what a 202 means, how long a request
    # waits for its rows, how many accepted records may wait in memory, how long a stop may take.
    TICKCAST_INGEST_ACK: Literal["stored", "queued"] = "stored"
    TICKCAST_INGEST_ACK_TIMEOUT_MS: Annotated[int, Field(ge=100, le=600_000)] = 10_000
    TICKCAST_INGEST_BUFFER_RECORDS: Annotated[int, Field(ge=100, le=10_000_000)] = 50_000
    TICKCAST_SHUTDOWN_TIMEOUT_S: Annotated[float, Field(ge=1, le=600)] = 20.0
    MODEL_STORE_DIR: str = "./var/models"

    # --- SQL interface (embedded: ClickHouse HTTP protocol, read-only) -------------------
    TICKCAST_SQL_PORT: Annotated[int, Field(ge=0, le=65535)] = 8123  # on TICKCAST_API_HOST; 0 = off
    TICKCAST_SQL_MAX_EXECUTION_S: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    TICKCAST_SQL_MAX_MEMORY_BYTES: Annotated[int, Field(ge=16 * 2**20)] = 2**30
    TICKCAST_SQL_MAX_RESULT_ROWS: PositiveInt = 10_000_000
    TICKCAST_SQL_MAX_RESULT_BYTES: Annotated[int, Field(ge=2**20)] = 256 * 2**20
    TICKCAST_SQL_MAX_THREADS: Annotated[int, Field(ge=1, le=256)] = 1
    TICKCAST_SQL_MAX_CONCURRENT: Annotated[int, Field(ge=1, le=64)] = 1

    # --- sentiment (seed 000 "감성 파이프라인") -------------------------------------
    SENTIMENT_EMA_WINDOWS: DurationList = ("5m", "15m", "60m")
    SENTIMENT_STEP_DEFAULT: str = "1m"
    SENTIMENT_MAX_LATENCY_MS: PositiveInt = 600_000
    SENTIMENT_DEDUP_WINDOW_SEC: PositiveInt = 120
    SENTIMENT_PROVIDER_TRUST_JSON: Weights = Field(default_factory=dict)
    SENTIMENT_ENABLE_SSE: bool = True
    SENTIMENT_HISTORY_MAX_POINTS: PositiveInt = 10_000
    SENTIMENT_POS_THRESHOLD: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
    SENTIMENT_AGG_WEIGHTS: Weights = Field(default_factory=dict)
    SENTIMENT_HISTORY_SIZE: PositiveInt = 100
    SENTIMENT_DISABLE_FAILURE_STREAK: PositiveInt = 5
    NEWS_SENTIMENT_CACHE_TTL: Annotated[int, Field(ge=0)] = 30

    # --- input bounds (every source: HTTP, Kafka, files, simulator) ----------------------
    INGEST_MAX_RECORD_BYTES: Annotated[int, Field(ge=1_024, le=16_777_216)] = 65_536
    INGEST_MAX_FUTURE_MS: Annotated[int, Field(ge=0, le=86_400_000)] = 60_000

    # --- join, features, training --------------------------------------------------
    FEATURE_JOIN_GRACE_MS: Annotated[int, Field(ge=0, le=600_000)] = 2_000
    FEATURE_JOIN_TIMEOUT_MS: Annotated[int, Field(ge=0, le=3_600_000)] = 15_000
    TRAINING_INCLUDE_SENTIMENT: bool = True
    TRAINING_IMPUTE_SENTIMENT: Literal["ffill", "zero", "none"] = "ffill"
    TRAINING_SENTIMENT_FEATURES: CsvList = (
        "sent_score,sent_cnt,sent_pos_ratio,sent_d1,sent_d5,sent_vol_30,sent_ema_5m,sent_ema_15m,sent_ema_60m"  # type: ignore[assignment]
    )
    TRAINING_ABLATION_REPORT: bool = True
    LABEL_HORIZON: Annotated[int, Field(ge=1, le=1_440)] = 1
    MIN_TRAIN_SAMPLES: PositiveInt = 500
    LABELER_MIN_AGE_SEC: Annotated[int, Field(ge=0)] = 120
    LABELER_LIMIT: PositiveInt = 1_000

    # --- model gates and lifecycle (seed 000 §4, seed 004) ---------------------------
    INITIAL_MODEL_MIN_AUC: Fraction = 0.65
    INITIAL_MODEL_MAX_ECE: Fraction = 0.05
    INITIAL_MODEL_MIN_PRAUC: Fraction | None = None
    AUTO_RETRAIN_ENABLED: bool = False
    AUTO_PROMOTE_ENABLED: bool = False
    PROMOTION_COOLDOWN_SECONDS: Annotated[int, Field(ge=0)] = 3_600
    RETRAIN_SCHEDULE: str = "0 0 * * tue"
    RETRAIN_TIMEZONE: str = "Asia/Seoul"
    MODEL_CLEANUP_DAYS: PositiveInt = 30

    # --- calibration monitor (seed 000 §2) --------------------------------------------
    CALIBRATION_MONITOR_ENABLED: bool = True
    CALIBRATION_EVAL_EVERY_SECONDS: PositiveInt = 300
    CALIBRATION_MONITOR_WINDOW_SECONDS: PositiveInt = 21_600
    CALIBRATION_DRIFT_MIN_SAMPLES: PositiveInt = 200
    CALIBRATION_BINS: Annotated[int, Field(ge=2, le=100)] = 10
    CALIBRATION_MIN_BIN_SAMPLES: PositiveInt = 30
    CALIBRATION_WILSON_Z: Annotated[float, Field(gt=0, le=10)] = 1.96
    CALIBRATION_MONITOR_ECE_DRIFT_ABS: Annotated[float, Field(gt=0, le=1)] = 0.10
    CALIBRATION_MONITOR_ECE_DRIFT_REL: Annotated[float, Field(gt=0)] = 0.8
    CALIBRATION_MONITOR_ABS_STREAK_TRIGGER: PositiveInt = 5
    CALIBRATION_MONITOR_REL_STREAK_TRIGGER: PositiveInt = 5
    CALIBRATION_ABS_DELTA_MULTIPLIER: Annotated[float, Field(ge=1)] = 2.5
    CALIBRATION_HYSTERESIS_ENTER: Annotated[float, Field(gt=0, le=1)] = 0.12
    CALIBRATION_HYSTERESIS_EXIT: Annotated[float, Field(ge=0, le=1)] = 0.08
    CALIBRATION_HYSTERESIS_EMA_ALPHA: Annotated[float, Field(gt=0, le=1)] = 0.3
    CALIBRATION_RECOMMEND_COOLDOWN_SECONDS: Annotated[int, Field(ge=0)] = 21_600
    CALIBRATION_GATE_BRIER_DELTA: Annotated[float, Field(ge=0, le=1)] = 0.02
    CALIBRATION_GATE_PRAUC_DELTA: Annotated[float, Field(ge=0, le=1)] = 0.05

    # --- feature drift, accuracy health (seed 000 §2.5, seed 004) -----------------------
    DRIFT_WINDOW: Annotated[int, Field(ge=2, le=100_000)] = 200
    DRIFT_Z_THRESHOLD: Annotated[float, Field(gt=0)] = 3.0
    ACCURACY_GOOD: Fraction = 0.70
    ACCURACY_WARNING: Fraction = 0.50
    ACCURACY_WINDOW: PositiveInt = 500
    ACCURACY_MIN_SAMPLES: PositiveInt = 100  # a version's own labeled predictions before GOOD/WARNING/CRITICAL
    ACCURACY_TREND_DAYS: PositiveInt = 28
    EMERGENCY_RETRAIN_COOLDOWN_SECONDS: Annotated[int, Field(ge=0)] = 21_600

    # --- metrics and alerting (seed 000 §4: "METRICS_* 설정과 주요 알림 토글") ---------------------
    # `tickcast alerts render` writes docker/prometheus/{alerts,prometheus}.yml from these.
    METRICS_ENABLED: bool = True  # serve /metrics (API) and the flow's metrics port
    METRICS_SCRAPE_INTERVAL_SECONDS: Annotated[int, Field(ge=1, le=3600)] = 15
    METRICS_ALERT_FOR_SECONDS: Annotated[int, Field(ge=0, le=86_400)] = 120  # a condition holds this long first
    METRICS_ALERT_CALIBRATION_DRIFT: bool = True
    METRICS_ALERT_RETRAIN_RECOMMENDED: bool = True
    METRICS_ALERT_ACCURACY_CRITICAL: bool = True
    METRICS_ALERT_FALLBACKS: bool = True
    METRICS_ALERT_INFERENCE_SLOW: bool = True
    METRICS_ALERT_INGEST_ERRORS: bool = True
    METRICS_ALERT_REJECTED_RECORDS: bool = True
    METRICS_ALERT_JOIN_MISSES: bool = True
    METRICS_ALERT_FLOW_LAG: bool = True
    METRICS_ALERT_STORE_WRITE_FAILURES: bool = True
    METRICS_ALERT_SSE_CLIENTS_DROP: bool = True
    METRICS_ALERT_TARGET_DOWN: bool = True
    METRICS_ALERT_TRADING_GUARD_TRIPPED: bool = True  # daily loss or kill switch blocks entries
    METRICS_ALERT_TRADING_DRAWDOWN_HALT: bool = True
    METRICS_ALERT_TRADING_REFUSALS: bool = True
    METRICS_ALERT_TRADING_EQUITY_DROP: bool = True
    METRICS_ALERT_TRADING_EXCHANGE_ERRORS: bool = True
    METRICS_ALERT_FALLBACKS_PER_5M: Annotated[float, Field(ge=0)] = 0.0  # baseline predictions per reason in 5 min
    METRICS_ALERT_INFERENCE_SECONDS: Annotated[float, Field(gt=0)] = 1.0  # seed 004: inference > 1 s
    METRICS_ALERT_INGEST_ERROR_RATIO: Annotated[float, Field(gt=0, le=1)] = 0.05
    METRICS_ALERT_REJECTED_PER_MINUTE: Annotated[float, Field(ge=0)] = 10.0
    METRICS_ALERT_JOIN_MISS_RATIO: Annotated[float, Field(gt=0, le=1)] = 0.5
    METRICS_ALERT_FLOW_LAG_SECONDS: Annotated[float, Field(gt=0)] = 180.0
    METRICS_ALERT_SSE_DROP_RATIO: Annotated[float, Field(gt=0, le=1)] = 0.5  # share of clients lost within 15 min
    METRICS_ALERT_SSE_MIN_CLIENTS: Annotated[int, Field(ge=1)] = 5  # below this many clients a drop is not alerted
    METRICS_ALERT_TRADING_REFUSALS_PER_15M: Annotated[float, Field(ge=0)] = 200.0  # refused entries per cause
    METRICS_ALERT_TRADING_REFUSALS_SPIKE_RATIO: Annotated[float, Field(ge=1)] = 3.0  # 15 min rate vs the 6 h rate
    METRICS_ALERT_TRADING_EQUITY_DROP_RATIO: Annotated[float, Field(gt=0, le=1)] = 0.02  # below the 1 h high

    # --- API, SSE, UI -----------------------------------------------------------------------
    API_KEYS: CsvList = ("tickcast-dev-key",)
    API_MAX_BODY_BYTES: PositiveInt = 1_048_576
    SSE_MAX_RATE_HZ: Annotated[float, Field(gt=0, le=1_000)] = 10.0
    SSE_MAX_BURST: Annotated[int, Field(ge=0, le=100)] = 2  # states beyond the rate allowed back to back
    SSE_KEEPALIVE_SECONDS: Annotated[float, Field(gt=0, le=300)] = 15.0
    SSE_RETRY_MS: PositiveInt = 3_000
    SSE_RESUME_MAX_EVENTS: PositiveInt = 10_000
    SSE_MAX_STREAM_SECONDS: Annotated[float, Field(ge=0, le=86_400)] = 0.0  # close streams after this; 0 = never
    API_CORS_ORIGINS: Origins = ()  # browser origins allowed to call the API cross-site; empty = CORS closed
    API_JOB_RATE_PER_HOUR: Annotated[int, Field(ge=1, le=3_600)] = 12  # job starts per kind over the API
    API_JOB_RATE_BURST: Annotated[int, Field(ge=1, le=100)] = 3  # job starts per kind allowed back to back
    BACKFILL_INPUT_ROOTS: CsvList = ("./var", tempfile.gettempdir())
    VITE_RISK_FRESH_MS: PositiveInt = 15_000
    VITE_SIG_FRESH_MS: PositiveInt = 90_000
    VITE_SEVERE_LAG_MULT: Annotated[float, Field(ge=1)] = 3.0
    VITE_DRIFT_WINDOW_DEFAULT: Annotated[int, Field(ge=2)] | None = None
    VITE_DRIFT_Z_THRESHOLD_DEFAULT: Annotated[float, Field(gt=0)] | None = None
    VITE_USE_MOCKS: bool = False  # the dashboard runs on mock data and mock SSE streams (UI work)
    VITE_INFERENCE_AUTO_LOOP_INTERVAL: Duration = "5s"  # how often the Trading page refreshes (served in ms)

    # --- trading (seed 000 environment section; docs/design.md §11) --------------------------
    TRADING_ENABLED: bool = True  # the paper-trading stage after the model stage
    TRADING_ACCOUNT: Annotated[str, Field(pattern=PROVIDER_RE.pattern)] = "paper"  # a name, as providers
    TRADING_INTERVAL: str = "1m"  # candles of this interval are traded
    TRADING_ENTRY_THRESHOLD: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.55  # enter long when P(up) >= this
    TRADING_EXIT_THRESHOLD: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.50  # exit a long when P(up) <= this
    TRADING_ALLOW_SHORT: bool = False  # short when P(up) <= 1 - entry (futures); long-only by default
    TRADING_TRADE_BASELINE: bool = False  # may baseline (fallback) predictions open or close positions?
    TRADING_FEE_MODE: Literal["taker", "maker", "mixed"] = "taker"
    TRADING_FEE_TAKER: Annotated[float, Field(ge=0.0, le=0.05)] = 0.001  # a fraction: 0.001 = 0.1 % = 10 bps
    TRADING_FEE_MAKER: Annotated[float, Field(ge=0.0, le=0.05)] = 0.001  # a fraction, like the taker fee
    TRADING_PAPER_SLIPPAGE_BPS: Annotated[float, Field(ge=0.0, le=1_000.0)] = 2.0  # basis points against the trader
    TRADING_SIZING_MODE: Literal["fixed", "kelly"] = "fixed"
    TRADING_KELLY_FRACTION: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    TRADING_KELLY_CAP: Annotated[float, Field(gt=0.0, le=1.0)] = 0.05  # at most this share of equity per entry
    TRADING_KELLY_MIN_TRADES: Annotated[int, Field(ge=1, le=100_000)] = 20  # closed trades before Kelly sizes
    TRADING_MAX_HOLDING: Duration = "60m"
    TRADING_WARMUP_CANDLES: Annotated[int, Field(ge=0, le=10_000)] = 30
    TRADING_SYMBOL_IDLE: Duration = "2h"  # event time a symbol may fall behind before the stage stops waiting
    TRADING_RELEASE_TIMEOUT_MS: Annotated[int, Field(ge=0, le=3_600_000)] = 20_000  # live: wall-clock wait
    TRADING_MAX_BUFFERED: Annotated[int, Field(ge=1_000, le=50_000_000)] = 1_000_000
    LIVE_TRADE_BASE_SIZE: Annotated[float, Field(gt=0.0)] = 100.0  # quote currency (USDT) notional per entry
    RISK_STARTING_EQUITY: Annotated[float, Field(gt=0.0)] = 10_000.0
    RISK_DAILY_LOSS_CAP: Annotated[float, Field(gt=0.0, le=1.0)] = 0.03  # share of the day's starting equity
    RISK_DAILY_LOSS_TIMEZONE: str = "UTC"
    RISK_MAX_DRAWDOWN: Annotated[float, Field(gt=0.0, le=1.0)] = 0.10  # share of the equity peak
    RISK_DRAWDOWN_FLATTEN: bool = False
    RISK_MAX_SYMBOL_EXPOSURE: Annotated[float, Field(gt=0.0, le=10.0)] = 0.25  # share of equity in one symbol
    RISK_MAX_CONCURRENT_POSITIONS: Annotated[int, Field(ge=1, le=100_000)] = 5
    RISK_ATR_STOP_MULT: Annotated[float, Field(gt=0.0, le=100.0)] | None = 2.0  # stop = entry -/+ k * ATR 14
    RISK_ATR_TAKE_PROFIT_MULT: Annotated[float, Field(gt=0.0, le=100.0)] | None = 3.0
    RISK_MAX_SLIPPAGE_BPS: Annotated[float, Field(gt=0.0, le=10_000.0)] = 50.0
    EXCHANGE_TRADING_ENABLED: bool = False
    BINANCE_TESTNET: bool = True
    BINANCE_ACCOUNT_TYPE: Literal["spot", "futures"] = "spot"
    SAFETY_ALLOW_REAL_TRADING: bool = False
    BINANCE_API_KEY: SecretStr | None = None
    BINANCE_API_SECRET: SecretStr | None = None
    BINANCE_REST_URL: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    INFERENCE_AUTO_LOOP_ENABLED: bool = True  # live heartbeat of the trading stage (see docs/decisions.md)
    INFERENCE_AUTO_LOOP_INTERVAL: Duration = "10s"

    @field_validator("SENTIMENT_STEP_DEFAULT")
    @classmethod
    def _step(cls, value: str) -> str:
        step = parse_duration_ms(value)
        if step % 60_000:
            raise ValueError(f"the bar step must be a whole number of minutes, got {value!r}")
        return value

    @field_validator("RETRAIN_TIMEZONE", "RISK_DAILY_LOSS_TIMEZONE")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Asia/Seoul, UTC)") from exc
        return value

    @field_validator("TRADING_INTERVAL")
    @classmethod
    def _interval(cls, value: str) -> str:
        from tickcast.records import INTERVAL_MS

        if value not in INTERVAL_MS:
            raise ValueError(f"expected a candle interval, one of {', '.join(INTERVAL_MS)}")
        return value

    @field_validator("RETRAIN_SCHEDULE")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(
                f"expected a 5-field crontab like '0 0 * * tue' (minute hour day month weekday), got {value!r}: {exc}"
            ) from exc
        return value

    # --- derived values (computed once) -------------------------------------------------
    @cached_property
    def ema_windows_s(self) -> tuple[int, ...]:
        return tuple(parse_duration_ms(w) // 1000 for w in self.SENTIMENT_EMA_WINDOWS)

    @cached_property
    def step_ms(self) -> int:
        return parse_duration_ms(self.SENTIMENT_STEP_DEFAULT)

    @property
    def trading_max_holding_ms(self) -> int:
        return parse_duration_ms(self.TRADING_MAX_HOLDING)

    @property
    def trading_symbol_idle_ms(self) -> int:
        return parse_duration_ms(self.TRADING_SYMBOL_IDLE)

    @property
    def auto_loop_interval_s(self) -> float:
        return parse_duration_ms(self.INFERENCE_AUTO_LOOP_INTERVAL) / 1000

    @cached_property
    def store_mode(self) -> StoreMode:
        """Embedded (chdb://) or server (http[s]://): decided once, here, from TICKCAST_CLICKHOUSE_URL."""
        from tickcast.store import store_mode

        return store_mode(self.TICKCAST_CLICKHOUSE_URL)

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.TICKCAST_KAFKA_BOOTSTRAP)

    @property
    def live_topics(self) -> dict[str, str]:
        """Live stream -> its Kafka topic (distributed fan-out; every stream of `tickcast.bus.STREAMS`)."""
        return {
            "sentiment": self.TICKCAST_TOPIC_SENTIMENT,
            "predictions": self.TICKCAST_TOPIC_PREDICTIONS,
            "calibration": self.TICKCAST_TOPIC_CALIBRATION,
            "events": self.TICKCAST_TOPIC_EVENTS,
            "trading": self.TICKCAST_TOPIC_TRADING,
        }

    def check_consistency(self) -> None:
        """Rules that involve two settings."""
        if self.CALIBRATION_HYSTERESIS_EXIT > self.CALIBRATION_HYSTERESIS_ENTER:
            raise SettingsError(
                "CALIBRATION_HYSTERESIS_EXIT must be <= CALIBRATION_HYSTERESIS_ENTER "
                f"(got exit={self.CALIBRATION_HYSTERESIS_EXIT}, enter={self.CALIBRATION_HYSTERESIS_ENTER})"
            )
        if self.ACCURACY_MIN_SAMPLES > self.ACCURACY_WINDOW:
            raise SettingsError(
                f"ACCURACY_MIN_SAMPLES must be <= ACCURACY_WINDOW (got {self.ACCURACY_MIN_SAMPLES} > "
                f"{self.ACCURACY_WINDOW}): the window could never hold enough predictions for a verdict"
            )
        if self.ACCURACY_WARNING > self.ACCURACY_GOOD:
            raise SettingsError(
                f"ACCURACY_WARNING must be <= ACCURACY_GOOD (got {self.ACCURACY_WARNING} > {self.ACCURACY_GOOD})"
            )
        if self.TRADING_EXIT_THRESHOLD >= self.TRADING_ENTRY_THRESHOLD:
            raise SettingsError(
                "TRADING_EXIT_THRESHOLD must be < TRADING_ENTRY_THRESHOLD "
                f"(got exit={self.TRADING_EXIT_THRESHOLD}, entry={self.TRADING_ENTRY_THRESHOLD}): "
                "a position would be closed on the candle that opened it"
            )
        if self.TRADING_ALLOW_SHORT and self.EXCHANGE_TRADING_ENABLED and self.BINANCE_ACCOUNT_TYPE == "spot":
            raise SettingsError(
                "TRADING_ALLOW_SHORT=true needs BINANCE_ACCOUNT_TYPE=futures when EXCHANGE_TRADING_ENABLED=true "
                "(a spot account cannot sell what it does not hold)"
            )
        if self.TICKCAST_INGEST_ACK_TIMEOUT_MS < self.TICKCAST_WRITE_FLUSH_MS + 1_000:
            raise SettingsError(
                "TICKCAST_INGEST_ACK_TIMEOUT_MS must be at least TICKCAST_WRITE_FLUSH_MS + 1000 (a request waits "
                f"for its rows' batch to be written; got {self.TICKCAST_INGEST_ACK_TIMEOUT_MS} with "
                f"TICKCAST_WRITE_FLUSH_MS={self.TICKCAST_WRITE_FLUSH_MS})"
            )
        for name in self.SENTIMENT_AGG_WEIGHTS:
            if name not in self.SENTIMENT_EMA_WINDOWS:
                raise SettingsError(
                    f"SENTIMENT_AGG_WEIGHTS names window {name!r}, which is not in "
                    f"SENTIMENT_EMA_WINDOWS={','.join(self.SENTIMENT_EMA_WINDOWS)}"
                )


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and `.env` if present), validate, and explain the first problem."""
    try:
        settings = Settings(_env_file=".env", **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    settings.check_consistency()
    return settings


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        given = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {name}={given!r}: {msg}")
    return "; ".join(lines)
