"""Calibration, drift and accuracy reads (seed 000 §2, seed 004 accuracy health)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.known import check_model_version, check_scope
from api.schemas import ANY, BOOL, INT, MS, NUM, STR, Schema, arr, enum, free_object, nullable, obj
from api.validation import Param, parse_query, spec
from tickcast.records import MAX_TS_MS, MIN_TS_MS, SYMBOL_RE

_DAY_MS = 86_400_000
VERSION = Param(
    "model_version",
    "string",
    pattern=r"[A-Za-z0-9._-]{1,128}",
    description="model version; default the production model",
)
SCOPE = Param(
    "scope",
    "string",
    default="overall",
    pattern=SYMBOL_RE.pattern.strip("^$"),  # "overall" matches it too
    description="'overall' or one symbol",
    example="overall",
)
BINS_PARAMS = (
    VERSION,
    SCOPE,
    Param(
        "window",
        "integer",
        minimum=60,
        maximum=90 * 86_400,
        description="seconds of labeled predictions; default CALIBRATION_MONITOR_WINDOW_SECONDS",
    ),
    Param("end", "timestamp", description="window end (epoch ms or ISO-8601); default the newest labeled prediction"),
)
STATUS_PARAMS = (
    Param(
        "model_version",
        "string",
        pattern=r"[A-Za-z0-9._-]{1,128}",
        description="only this model version; default every version",
    ),
)
WINDOWS_PARAMS = (
    STATUS_PARAMS[0],
    SCOPE,
    Param("start", "timestamp", description="window_end >= start; default no bound"),
    Param("end", "timestamp", description="window_end < end; default no bound"),
    Param("limit", "integer", default=500, minimum=1, maximum=10_000, description="newest windows to return"),
    Param("include_bins", "boolean", default=False, description="include each window's reliability bins"),
)
DRIFT_PARAMS = (
    Param("kind", "string", pattern=r"[a-z_]{1,64}", description="event kind, e.g. calibration_drift, feature_drift"),
    Param("start", "timestamp", description="ts >= start; default no bound"),
    Param("end", "timestamp", description="ts < end; default no bound"),
    Param("limit", "integer", default=100, minimum=1, maximum=10_000, description="newest events to return"),
)
ACCURACY_PARAMS = (
    Param("days", "integer", minimum=1, maximum=366, description="days of trend; default ACCURACY_TREND_DAYS"),
    Param(
        "model_version",
        "string",
        pattern=r"[A-Za-z0-9._-]{1,128}",
        description="one model version ('baseline' included); default the production model, else the newest serving one",
    ),
)


_NUMS = ("ece", "brier", "roc_auc", "pr_auc")
BIN = obj(
    {
        "lo": NUM,
        "hi": NUM,
        "n": INT,
        **{k: nullable(NUM) for k in ("mean_prob", "pos_rate", "wilson_lo", "wilson_hi")},
        "reliable": BOOL,
    }
)
REPORT = obj({"n": INT, **{k: nullable(NUM) for k in _NUMS}, "bins": arr(BIN)})
REFERENCE = obj(
    {
        "version": nullable(STR),
        "status": nullable(STR),
        "ece": nullable(NUM),
        "brier": nullable(NUM),
        "pr_auc": nullable(NUM),
        "roc_auc": nullable(NUM),
        "n": nullable(INT),
        "bins": nullable(arr(free_object())),
    },
    description="the model's own validation report at training time",
)
HEALTH: Schema = {
    "type": "string",
    "nullable": True,
    "enum": ["GOOD", "WARNING", "CRITICAL", "INSUFFICIENT_DATA", None],
}
# What a ΔECE may be read as (delta_verdict): no verdict below CALIBRATION_DRIFT_MIN_SAMPLES.
VERDICT = enum("insufficient_data", "no_reference", "breach", "ok")
WINDOW = obj(
    {
        "model_version": STR,
        "scope": STR,
        "window_end_ms": MS,
        "window_seconds": INT,
        "n": INT,
        **{k: nullable(NUM) for k in (*_NUMS, "accuracy", "ece_prod", "delta_ece")},
        "abs_streak": INT,
        "rel_streak": INT,
        "delta_ece_ema": nullable(NUM),
        "drift_on": BOOL,
        "state": STR,
        "recommendation": STR,
        "cooldown_remaining_s": NUM,
        "bins": nullable(arr(free_object())),
        "verdict": VERDICT,
    },
    optional=["bins", "verdict"],
)
MONITOR_SETTINGS = obj(
    {"abs": NUM, "rel": NUM, "enter": NUM, "exit": NUM, "cooldown_s": INT, "min_samples": INT},
    optional=["min_samples"],
)


def _registry_meta(ctx: AppContext, version: str) -> dict[str, Any] | None:
    from models.registry import RegistryError

    try:
        return ctx.registry().metadata(version)
    except RegistryError:
        return None


def _production_version(ctx: AppContext) -> str | None:
    return ctx.registry().state()["production"]


async def _resolve_version(ctx: AppContext, given: str | None) -> str:
    if given:
        return given
    version = await blocking(_production_version, ctx)
    if version:
        return version
    rows = await blocking(ctx.store.named, "predictions_latest_version", {})
    if not rows:
        raise ApiError(404, "no production model and no predictions yet: pass model_version, or wait for the flow")
    return str(rows[0]["model_version"])


def _reference(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The model's own validation report at training time: the 'production' curve."""
    if meta is None:
        return None
    metrics = meta.get("metrics") or {}
    return {
        "version": meta.get("version"),
        "status": meta.get("status"),
        "ece": meta.get("ece_prod"),
        "brier": meta.get("brier_prod"),
        "pr_auc": meta.get("pr_auc_prod"),
        "roc_auc": meta.get("roc_auc"),
        "n": metrics.get("n"),
        "bins": metrics.get("bins"),
    }


@spec(
    "Live reliability bins (ECE, Brier, ROC-AUC, PR-AUC, Wilson intervals) of labeled predictions over the "
    "last window, with the model's production reference for a live-vs-production diagram",
    params=BINS_PARAMS,
    responses={200: "report", 400: "bad parameter", 404: "unknown model version or scope, or no predictions yet"},
    tag="calibration",
    returns=obj(
        {
            "model_version": STR,
            "scope": STR,
            "window_seconds": INT,
            "window_end": nullable(MS),
            "enough_samples": BOOL,
            "min_samples": INT,
            "live": REPORT,
            "production": nullable(REFERENCE),
            "delta_ece": nullable(NUM),
            "verdict": VERDICT,
        }
    ),
)
async def bins(request: Request) -> Response:
    from models.calibration import calibration_report

    ctx = get_ctx(request)
    s = ctx.settings
    q = parse_query(request, BINS_PARAMS)
    await check_model_version(ctx, q["model_version"])
    await check_scope(ctx, q["scope"])
    version = await _resolve_version(ctx, q["model_version"])
    window_s = q["window"] or s.CALIBRATION_MONITOR_WINDOW_SECONDS
    args = {"model_version": version, "scope": q["scope"]}
    end = q["end"]
    if end is None:
        latest = (await blocking(ctx.store.named, "calibration_latest_time", args))[0]
        end = int(latest["end_ms"]) if latest["n"] else None
    if end is None:
        prob, label = np.empty(0), np.empty(0, dtype=np.int64)
        end = 0
    else:
        table = await blocking(
            ctx.store.arrow, _query("calibration_pairs"), {**args, "start": end - window_s * 1000, "end": end}
        )
        prob = table.column("prob").to_numpy().astype(np.float64)
        label = table.column("label").to_numpy().astype(np.int64)
    report = calibration_report(
        prob, label, bins=s.CALIBRATION_BINS, z=s.CALIBRATION_WILSON_Z, min_bin_samples=s.CALIBRATION_MIN_BIN_SAMPLES
    )
    reference = _reference(await blocking(_registry_meta, ctx, version))
    ref_ece = reference.get("ece") if reference else None
    delta = report["ece"] - ref_ece if report["ece"] is not None and ref_ece is not None else None
    return JSONResponse(
        {
            "model_version": version,
            "scope": q["scope"],
            "window_seconds": window_s,
            "window_end": end or None,
            "enough_samples": report["n"] >= s.CALIBRATION_DRIFT_MIN_SAMPLES,
            "min_samples": s.CALIBRATION_DRIFT_MIN_SAMPLES,
            "live": report,
            "production": reference,
            "delta_ece": delta,
            "verdict": delta_verdict(
                delta, report["n"], s.CALIBRATION_DRIFT_MIN_SAMPLES, s.CALIBRATION_MONITOR_ECE_DRIFT_ABS
            ),
        }
    )


def delta_verdict(delta: float | None, n: int, min_samples: int, abs_threshold: float) -> str:
    """What a ΔECE may be read as: `insufficient_data` below CALIBRATION_DRIFT_MIN_SAMPLES (the
    flow does not evaluate drift there either), `no_reference` without a production ECE,
    else `breach` (ΔECE > CALIBRATION_MONITOR_ECE_DRIFT_ABS) or `ok`.

    >>> delta_verdict(0.4, 20, 200, 0.1), delta_verdict(0.4, 200, 200, 0.1), delta_verdict(None, 500, 200, 0.1)
    ('insufficient_data', 'breach', 'no_reference')
    """
    if n < min_samples:
        return "insufficient_data"
    if delta is None:
        return "no_reference"
    return "breach" if delta > abs_threshold else "ok"


def _query(name: str) -> str:
    import sql

    return sql.query(name)


@spec(
    "Latest calibration-monitor state per scope: ΔECE, streaks, EMA, drift state, cooldown, recommendation",
    params=STATUS_PARAMS,
    responses={200: "status", 404: "unknown model version"},
    tag="calibration",
    returns=obj({"scopes": arr(WINDOW), "overall": nullable(WINDOW), "settings": MONITOR_SETTINGS}),
)
async def status(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, STATUS_PARAMS)
    await check_model_version(ctx, q["model_version"])
    rows = await blocking(
        ctx.store.named, "calibration_status", {"model_version": q["model_version"] or "", "limit": 1000}
    )
    s = ctx.settings
    for row in rows:
        row["drift_on"] = bool(row["drift_on"])
        row["verdict"] = delta_verdict(
            row["delta_ece"], int(row["n"]), s.CALIBRATION_DRIFT_MIN_SAMPLES, s.CALIBRATION_MONITOR_ECE_DRIFT_ABS
        )
    overall = next((r for r in rows if r["scope"] == "overall"), None)
    return JSONResponse(
        {
            "scopes": rows,
            "overall": overall,
            "settings": {
                "abs": ctx.settings.CALIBRATION_MONITOR_ECE_DRIFT_ABS,
                "rel": ctx.settings.CALIBRATION_MONITOR_ECE_DRIFT_REL,
                "enter": ctx.settings.CALIBRATION_HYSTERESIS_ENTER,
                "exit": ctx.settings.CALIBRATION_HYSTERESIS_EXIT,
                "cooldown_s": ctx.settings.CALIBRATION_RECOMMEND_COOLDOWN_SECONDS,
                "min_samples": ctx.settings.CALIBRATION_DRIFT_MIN_SAMPLES,
            },
        }
    )


def _range(q: dict[str, Any]) -> tuple[int, int]:
    start = q["start"] if q["start"] is not None else MIN_TS_MS
    end = q["end"] if q["end"] is not None else MAX_TS_MS
    if start > end:
        raise ApiError(400, f"'start' ({start}) is after 'end' ({end}); swap them")
    return start, end


@spec(
    "Calibration window history of one scope (ΔECE over time)",
    params=WINDOWS_PARAMS,
    responses={200: "windows", 400: "bad parameter", 404: "unknown model version or scope"},
    tag="calibration",
    returns=obj({"scope": STR, "count": INT, "windows": arr(WINDOW)}),
)
async def windows(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, WINDOWS_PARAMS)
    start, end = _range(q)
    await check_model_version(ctx, q["model_version"])
    await check_scope(ctx, q["scope"])
    rows = await blocking(
        ctx.store.named,
        "calibration_windows",
        {
            "model_version": q["model_version"] or "",
            "scope": q["scope"],
            "start": start,
            "end": end,
            "limit": q["limit"],
        },
    )
    for row in rows:
        row["drift_on"] = bool(row["drift_on"])
        text = row.pop("bins")
        if q["include_bins"]:
            row["bins"] = _json(text)
    return JSONResponse({"scope": q["scope"], "count": len(rows), "windows": rows})


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


@spec(
    "Drift events (calibration drift transitions, recommendations, feature drift), newest first",
    params=DRIFT_PARAMS,
    responses={200: "events", 400: "bad parameter"},
    tag="calibration",
    returns=obj(
        {
            "count": INT,
            "events": arr(
                obj(
                    {
                        "event_id": STR,
                        "kind": STR,
                        "ts_ms": MS,
                        "model_version": STR,
                        "scope": STR,
                        "feature": STR,
                        "value": nullable(NUM),
                        "threshold": nullable(NUM),
                        "details": ANY,
                    }
                )
            ),
        }
    ),
)
async def drift_events(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, DRIFT_PARAMS)
    start, end = _range(q)
    rows = await blocking(
        ctx.store.named, "drift_events", {"kind": q["kind"] or "", "start": start, "end": end, "limit": q["limit"]}
    )
    for row in rows:
        row["details"] = _json(row["details"])
    return JSONResponse({"count": len(rows), "events": rows})


@spec(
    "Daily directional accuracy of one model version's labeled predictions and its current health "
    "(GOOD/WARNING/CRITICAL, or INSUFFICIENT_DATA below ACCURACY_MIN_SAMPLES), plus every version's own health",
    params=ACCURACY_PARAMS,
    responses={200: "trend", 404: "unknown model version"},
    tag="calibration",
    returns=obj(
        {
            "days": INT,
            "model_version": nullable(STR),
            "trend": arr(obj({"date": STR, "accuracy": NUM, "n": INT})),
            "current": obj(
                {
                    "accuracy": nullable(NUM),
                    "n": INT,
                    "health": HEALTH,
                    "window": INT,
                    "min_samples": INT,
                }
            ),
            "versions": arr(
                obj({"model_version": STR, "accuracy": NUM, "n": INT, "health": HEALTH, "last_ms": MS}),
            ),
            "thresholds": obj({"good": NUM, "warning": NUM, "min_samples": INT}),
        }
    ),
)
async def accuracy_trend(request: Request) -> Response:
    from models.accuracy import daily_trend, health_of

    ctx = get_ctx(request)
    s = ctx.settings
    q = parse_query(request, ACCURACY_PARAMS)
    await check_model_version(ctx, q["model_version"])
    days = q["days"] or s.ACCURACY_TREND_DAYS
    # One version's own predictions (default: the production model, else the newest serving
    # version), never a mix: a model promoted a minute ago must not wear its predecessor's record.
    try:
        version = await _resolve_version(ctx, q["model_version"])
    except ApiError:
        version = ""  # nothing predicted yet: empty answer below

    def health(acc: float | None, n: int) -> str:
        return health_of(acc, n, s.ACCURACY_MIN_SAMPLES, s.ACCURACY_GOOD, s.ACCURACY_WARNING)

    trend: list[dict[str, Any]] = []
    current: dict[str, Any] = {
        "accuracy": None,
        "n": 0,
        "health": health(None, 0),
        "window": s.ACCURACY_WINDOW,
        "min_samples": s.ACCURACY_MIN_SAMPLES,
    }
    latest = (await blocking(ctx.store.named, "accuracy_latest_time", {"model_version": version}))[0] if version else {}
    if latest.get("n"):
        end = int(latest["end_ms"])
        start = (end // _DAY_MS - days + 1) * _DAY_MS
        table = await blocking(
            ctx.store.arrow, _query("accuracy_rows"), {"model_version": version, "start": start, "end": end}
        )
        trend = daily_trend(table.column("t").to_numpy(), table.column("correct").to_numpy(), days, end_ms=end)
        recent = (
            await blocking(ctx.store.named, "accuracy_recent", {"model_version": version, "limit": s.ACCURACY_WINDOW})
        )[0]
        acc, n = float(recent["accuracy"]), int(recent["n"])
        current = {**current, "accuracy": acc, "n": n, "health": health(acc, n)}
    by_version = await blocking(ctx.store.named, "accuracy_by_version", {"limit": s.ACCURACY_WINDOW})
    versions = [
        {
            "model_version": row["model_version"],
            "accuracy": float(row["accuracy"]),
            "n": int(row["n"]),
            "health": health(float(row["accuracy"]), int(row["n"])),
            "last_ms": int(row["last_ms"]),
        }
        for row in by_version
    ]
    return JSONResponse(
        {
            "days": days,
            "model_version": version or None,
            "trend": trend,
            "current": current,
            "versions": versions,
            "thresholds": {
                "good": s.ACCURACY_GOOD,
                "warning": s.ACCURACY_WARNING,
                "min_samples": s.ACCURACY_MIN_SAMPLES,
            },
        }
    )


routes = [
    Route("/api/calibration/bins", bins, methods=["GET"]),
    Route("/api/calibration/status", status, methods=["GET"]),
    Route("/api/calibration/windows", windows, methods=["GET"]),
    Route("/api/drift/events", drift_events, methods=["GET"]),
    Route("/api/accuracy/trend", accuracy_trend, methods=["GET"]),
]
