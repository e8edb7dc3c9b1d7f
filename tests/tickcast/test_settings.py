"""Settings: every DESIGN/seed variable with its seed default; bad values name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tickcast.settings import Settings, SettingsError, load_settings, parse_duration_ms

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"

SEED_DEFAULTS = {
    "SENTIMENT_EMA_WINDOWS": ("5m", "15m", "60m"),
    "SENTIMENT_STEP_DEFAULT": "1m",
    "SENTIMENT_MAX_LATENCY_MS": 600000,
    "SENTIMENT_DEDUP_WINDOW_SEC": 120,
    "SENTIMENT_PROVIDER_TRUST_JSON": {},
    "SENTIMENT_ENABLE_SSE": True,
    "SENTIMENT_HISTORY_MAX_POINTS": 10000,
    "SENTIMENT_POS_THRESHOLD": 0.0,
    "SENTIMENT_AGG_WEIGHTS": {},
    "SENTIMENT_HISTORY_SIZE": 100,
    "SENTIMENT_DISABLE_FAILURE_STREAK": 5,
    "NEWS_SENTIMENT_CACHE_TTL": 30,
    "TRAINING_INCLUDE_SENTIMENT": True,
    "TRAINING_IMPUTE_SENTIMENT": "ffill",
    "TRAINING_SENTIMENT_FEATURES": (
        "sent_score",
        "sent_cnt",
        "sent_pos_ratio",
        "sent_d1",
        "sent_d5",
        "sent_vol_30",
        "sent_ema_5m",
        "sent_ema_15m",
        "sent_ema_60m",
    ),
    "TRAINING_ABLATION_REPORT": True,
    "CALIBRATION_MONITOR_ECE_DRIFT_ABS": 0.10,
    "CALIBRATION_MONITOR_ECE_DRIFT_REL": 0.8,
    "CALIBRATION_MONITOR_ABS_STREAK_TRIGGER": 5,
    "CALIBRATION_MONITOR_REL_STREAK_TRIGGER": 5,
    "CALIBRATION_MONITOR_WINDOW_SECONDS": 21600,
    "CALIBRATION_ABS_DELTA_MULTIPLIER": 2.5,
    "CALIBRATION_RECOMMEND_COOLDOWN_SECONDS": 21600,
    "CALIBRATION_HYSTERESIS_ENTER": 0.12,
    "CALIBRATION_HYSTERESIS_EXIT": 0.08,
    "CALIBRATION_BINS": 10,
    "CALIBRATION_WILSON_Z": 1.96,
    "CALIBRATION_EVAL_EVERY_SECONDS": 300,
    "INITIAL_MODEL_MIN_AUC": 0.65,
    "INITIAL_MODEL_MAX_ECE": 0.05,
    "INITIAL_MODEL_MIN_PRAUC": None,
    "FEATURE_JOIN_GRACE_MS": 2000,
    "LABEL_HORIZON": 1,
    "MIN_TRAIN_SAMPLES": 500,
    "DRIFT_WINDOW": 200,
    "DRIFT_Z_THRESHOLD": 3.0,
    "ACCURACY_GOOD": 0.70,
    "ACCURACY_WARNING": 0.50,
    "LABELER_MIN_AGE_SEC": 120,
    "LABELER_LIMIT": 1000,
    "TICKCAST_CLICKHOUSE_URL": "chdb:///./var/clickhouse",
    "RETRAIN_SCHEDULE": "0 0 * * tue",
    "RETRAIN_TIMEZONE": "Asia/Seoul",
    # trading: the seed's switches (docs/design.md §11)
    "EXCHANGE_TRADING_ENABLED": False,
    "BINANCE_TESTNET": True,
    "BINANCE_ACCOUNT_TYPE": "spot",
    "SAFETY_ALLOW_REAL_TRADING": False,
}


def test_seed_defaults() -> None:
    settings = Settings()
    for name, value in SEED_DEFAULTS.items():
        assert getattr(settings, name) == value, name


def test_every_upper_case_name_of_design_and_seeds_is_a_setting() -> None:
    text = DESIGN.read_text()  # the repository's own contract, seed 000's settings included (§12)
    # settings-like names from the sentiment / calibration / training / model sections
    names = set(
        re.findall(
            r"\b((?:SENTIMENT|CALIBRATION|TRAINING|INITIAL_MODEL|DRIFT|ACCURACY|AUTO|FEATURE_JOIN|"
            r"LABEL|MIN_TRAIN|RETRAIN|MODEL_STORE|API|SSE|TICKCAST|NEWS_SENTIMENT|"
            r"TRADING|RISK|LIVE_TRADE|EXCHANGE|BINANCE|SAFETY|INFERENCE|VITE)_[A-Z0-9_]*[A-Z0-9])\b",
            text,
        )
    )
    names -= {"CALIBRATION_DRIFT_", "SENTIMENT_PIPELINE"}
    missing = sorted(n for n in names if n not in Settings.model_fields and not n.endswith("_"))
    assert missing == []


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("CALIBRATION_BINS", "0", "greater than or equal to 2"),
        ("SENTIMENT_EMA_WINDOWS", "5m,fifteen", "duration"),
        ("SENTIMENT_PROVIDER_TRUST_JSON", "[1, 2]", "JSON object"),
        ("SENTIMENT_PROVIDER_TRUST_JSON", '{"newsapi": -1}', ">= 0"),
        ("TRAINING_IMPUTE_SENTIMENT", "mean", "'ffill', 'zero' or 'none'"),
        ("RETRAIN_SCHEDULE", "every tuesday", "crontab"),
        ("RETRAIN_TIMEZONE", "Mars/Olympus", "time zone"),
        ("TICKCAST_CLICKHOUSE_URL", "mysql://db", "chdb:///"),
        ("INITIAL_MODEL_MIN_AUC", "1.5", "less than or equal to 1"),
        ("SENTIMENT_STEP_DEFAULT", "90s", "whole number of minutes"),
        ("TRADING_FEE_TAKER", "10", "less than or equal to 0.05"),
        ("TRADING_ENTRY_THRESHOLD", "0.4", "greater than 0.5"),
        ("TRADING_MAX_HOLDING", "forever", "duration"),
        ("TRADING_INTERVAL", "7m", "candle interval"),
        ("BINANCE_ACCOUNT_TYPE", "margin", "'spot' or 'futures'"),
        ("RISK_DAILY_LOSS_TIMEZONE", "Moon/Base", "time zone"),
        ("SAFETY_ALLOW_REAL_TRADING", "maybe", "bool"),
        ("INFERENCE_AUTO_LOOP_INTERVAL", "0s", "duration"),
        ("INGEST_MAX_RECORD_BYTES", "100", "greater than or equal to 1024"),
        ("INGEST_MAX_FUTURE_MS", "-1", "greater than or equal to 0"),
        ("INGEST_MAX_FUTURE_MS", "1m", "valid integer"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert name in str(err.value) and fragment in str(err.value)


def test_cross_field_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALIBRATION_HYSTERESIS_EXIT", "0.2")
    with pytest.raises(SettingsError, match="CALIBRATION_HYSTERESIS_EXIT must be <= CALIBRATION_HYSTERESIS_ENTER"):
        load_settings()
    monkeypatch.delenv("CALIBRATION_HYSTERESIS_EXIT")
    monkeypatch.setenv("SENTIMENT_AGG_WEIGHTS", '{"7m": 1.0}')
    with pytest.raises(SettingsError, match="SENTIMENT_AGG_WEIGHTS names window '7m'"):
        load_settings()
    monkeypatch.delenv("SENTIMENT_AGG_WEIGHTS")
    monkeypatch.setenv("TRADING_EXIT_THRESHOLD", "0.6")
    with pytest.raises(SettingsError, match="TRADING_EXIT_THRESHOLD must be < TRADING_ENTRY_THRESHOLD"):
        load_settings()
    monkeypatch.delenv("TRADING_EXIT_THRESHOLD")
    for name, value in {"TRADING_ALLOW_SHORT": "true", "EXCHANGE_TRADING_ENABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="TRADING_ALLOW_SHORT=true needs BINANCE_ACCOUNT_TYPE=futures"):
        load_settings()


def test_env_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_EMA_WINDOWS", "1m, 1h")
    monkeypatch.setenv("SENTIMENT_PROVIDER_TRUST_JSON", '{"newsapi": 0.5}')
    monkeypatch.setenv("API_KEYS", "a, b")
    s = load_settings()
    assert s.ema_windows_s == (60, 3600) and s.SENTIMENT_PROVIDER_TRUST_JSON == {"newsapi": 0.5}
    assert s.API_KEYS == ("a", "b")


def test_env_example_lists_every_setting_and_loads() -> None:
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    assert set(Settings.model_fields) <= listed
    assert "KO:" in example and "EN:" in example


def test_parse_duration() -> None:
    assert parse_duration_ms("15m") == 900_000 and parse_duration_ms("2h") == 7_200_000
    with pytest.raises(ValueError):
        parse_duration_ms("0m")
