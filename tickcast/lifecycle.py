"""Model lifecycle jobs (DESIGN §7): train, recalibrate, label catch-up.

Each job is `fn(params, progress) -> result dict`, so the CLI, the admin API, the
drift monitor and the schedule all run the same code through the job center.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from models.registry import ModelRegistry, PromotionRefused
from models.training import Gates, NotEnoughData, recalibrate_model, train_model
from tickcast.features import MARKET_FEATURES
from tickcast.settings import Settings
from tickcast.store import Store

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


def registry_for(settings: Settings, store: Store | None) -> ModelRegistry:
    """The on-disk registry, mirrored into `model_registry` when a store is given."""
    return ModelRegistry(settings.MODEL_STORE_DIR, mirror=(lambda meta: mirror_model(store, meta)) if store else None)


def mirror_model(store: Store, meta: dict[str, Any]) -> None:
    import orjson

    from models.registry import to_jsonable

    now = int(time.time() * 1000)
    created = pd.Timestamp(
        meta.get("created_at") or now, unit="ms" if isinstance(meta.get("created_at"), int) else None
    )
    metrics = {k: meta.get(k) for k in ("ece_prod", "brier_prod", "pr_auc_prod", "roc_auc", "baseline_brier")}
    store.insert_rows(
        "model_registry",
        [
            {
                "version": meta["version"],
                "status": meta.get("status", ""),
                "created_at": int(created.value // 1_000_000),
                "sha256": meta.get("sha256", ""),
                "metrics": orjson.dumps(to_jsonable(metrics)).decode(),
                "metadata": orjson.dumps(to_jsonable(meta)).decode(),
                "updated_at": now,
            }
        ],
    )


def feature_names(settings: Settings) -> list[str]:
    names = list(MARKET_FEATURES)
    if settings.TRAINING_INCLUDE_SENTIMENT:
        names += list(settings.TRAINING_SENTIMENT_FEATURES)
    return names


def gates(settings: Settings) -> Gates:
    return Gates(settings.INITIAL_MODEL_MIN_AUC, settings.INITIAL_MODEL_MAX_ECE, settings.INITIAL_MODEL_MIN_PRAUC)


def training_frame(store: Store, settings: Settings, *, since_ms: int | None = None) -> pd.DataFrame:
    """`features ⋈ labels` in time order (the serving feature log is the training set)."""
    names = feature_names(settings)
    cols = ", ".join(f"f.{n} AS {n}" for n in names)
    text = (
        f"SELECT f.symbol AS symbol, toUnixTimestamp64Milli(f.close_time) AS close_time, {cols}, l.label AS label "
        "FROM {db}.features AS f FINAL "
        "INNER JOIN (SELECT symbol, interval, close_time, label FROM {db}.labels FINAL "
        "            WHERE horizon = {h:UInt16}) AS l "
        "ON l.symbol = f.symbol AND l.interval = f.interval AND l.close_time = f.close_time "
        "WHERE f.interval = '1m' AND f.close_time >= fromUnixTimestamp64Milli({since:Int64}) "
        "ORDER BY close_time, symbol"
    )
    df = store.df(text, {"h": settings.LABEL_HORIZON, "since": since_ms or 0})
    for name in names:
        df[name] = df[name].astype("float64")
    return df


def train_job(settings: Settings, store: Store) -> Callable[[dict[str, Any], Progress], dict[str, Any]]:
    def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        progress(0.02, "reading features ⋈ labels from ClickHouse")
        df = training_frame(store, settings)
        try:
            result = train_model(
                df,
                feature_names=feature_names(settings),
                horizon_candles=settings.LABEL_HORIZON,
                min_train_samples=settings.MIN_TRAIN_SAMPLES,
                gates=gates(settings),
                include_sentiment=settings.TRAINING_INCLUDE_SENTIMENT,
                ablation=settings.TRAINING_ABLATION_REPORT,
                progress=lambda f, s: progress(0.05 + 0.85 * f, s),
            )
        except NotEnoughData as exc:
            raise RuntimeError(str(exc)) from None
        registry = registry_for(settings, store)
        version = registry.register(result)
        outcome: dict[str, Any] = {
            "version": version,
            "passed": result.passed,
            "gate_failures": result.gate_failures,
            "roc_auc": result.roc_auc,
            "ece": result.ece_prod,
            "brier": result.brier_prod,
            "baseline_brier": result.baseline_brier,
            "rows": int(len(df)),
        }
        outcome["promoted"] = _maybe_promote(settings, registry, version, result.passed, params)
        progress(1.0, "registered " + version + (" (promoted)" if outcome["promoted"] else ""))
        return outcome

    return run


def recalibrate_job(settings: Settings, store: Store) -> Callable[[dict[str, Any], Progress], dict[str, Any]]:
    def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        registry = registry_for(settings, store)
        production = registry.production()
        if production is None:
            raise RuntimeError("no production model to recalibrate; train one first (tickcast train)")
        previous = registry.load_version(production["version"])
        since = int(time.time() * 1000) - settings.CALIBRATION_MONITOR_WINDOW_SECONDS * 1000 * 4
        df = training_frame(store, settings, since_ms=params.get("since_ms", since))
        progress(0.1, f"refitting the temperature on {len(df)} recent labeled rows")
        result = recalibrate_model(
            previous, df, gates=gates(settings), progress=lambda f, s: progress(0.1 + 0.8 * f, s)
        )
        version = registry.register(result)
        promoted = _maybe_promote(settings, registry, version, result.passed, params)
        return {
            "version": version,
            "passed": result.passed,
            "gate_failures": result.gate_failures,
            "temperature": result.temperature,
            "promoted": promoted,
        }

    return run


def _maybe_promote(
    settings: Settings, registry: ModelRegistry, version: str, passed: bool, params: dict[str, Any]
) -> bool:
    if not passed or not (settings.AUTO_PROMOTE_ENABLED or params.get("promote")):
        return False
    try:
        registry.promote(
            version,
            auto_promote_enabled=True,
            cooldown_s=settings.PROMOTION_COOLDOWN_SECONDS,
            force=bool(params.get("promote")),
        )
        return True
    except PromotionRefused as exc:
        log.warning("trained %s but did not promote it: %s", version, exc)
        return False


def labeler_job(settings: Settings, store: Store) -> Callable[[dict[str, Any], Progress], dict[str, Any]]:
    """Batch catch-up for labels the stream missed (seed defaults min_age=120s, limit=1000, force)."""

    def run(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        min_age = int(params.get("min_age", settings.LABELER_MIN_AGE_SEC))
        limit = int(params.get("limit", settings.LABELER_LIMIT))
        force = bool(params.get("force", True))
        rows = store.named(
            "labeler_candidates",
            {
                "h": settings.LABEL_HORIZON,
                "min_age_ms": min_age * 1000,
                "limit": limit,
                "force": int(force),
                "now_ms": int(time.time() * 1000),
            },
        )
        progress(0.5, f"{len(rows)} labels to write")
        labels = [
            {
                "symbol": r["symbol"],
                "interval": r["interval"],
                "close_time": int(r["close_time"]),
                "horizon": settings.LABEL_HORIZON,
                "label": int(r["close_th"] > r["close_t"]),
                "close_t": r["close_t"],
                "close_th": r["close_th"],
            }
            for r in rows
        ]
        store.insert_rows("labels", labels)
        return {"labeled": len(labels), "min_age": min_age, "limit": limit, "force": force}

    return run
