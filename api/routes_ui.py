"""The operator dashboard: the page (`/`, `/ui`, `/static/*`) and the reads only it needs.

The page is plain ES modules and hand-written SVG under `api/static/` — no build step,
nothing fetched from a CDN. It learns its settings from `GET /api/ui-config`.

API key hand-off: in embedded mode (`chdb://` store, so `tickcast up`), with the API bound
to a loopback host and the request coming from loopback, `/api/ui-config` includes the first
of `API_KEYS`, so the quick start works without typing a key. Anywhere else the page asks
for the key and keeps it in the browser's localStorage.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.validation import Param, parse_query, spec
from tickcast.records import INTERVAL_MS
from tickcast.settings import parse_duration_ms

STATIC_DIR = Path(__file__).resolve().parent / "static"
FEATURE_COLUMNS = (
    "ret_1",
    "ret_5",
    "ret_15",
    "rv_30",
    "atr_14",
    "rsi_14",
    "vol_z_30",
    "hl_range",
    "sent_score",
    "sent_cnt",
    "sent_pos_ratio",
    "sent_d1",
    "sent_d5",
    "sent_vol_30",
    "sent_ema_5m",
    "sent_ema_15m",
    "sent_ema_60m",
    "sent_composite",
)  # the numeric columns of sql/queries/feature_drift_rows.sql
_NO_CACHE = {"Cache-Control": "no-cache"}
_LOOPBACK_NAMES = {"localhost"}


# --- the page -------------------------------------------------------------------------------
class _RevalidatedStatic(StaticFiles):
    """Static files the browser must revalidate (ETag -> 304), so an upgrade is seen at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response


_STATIC = _RevalidatedStatic(directory=STATIC_DIR)
STATIC_PARAMS = (
    Param(
        "name",
        "string",
        location="path",
        pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}",
        description="file name under api/static (the page's ES modules, CSS, icon)",
    ),
)


@spec(
    "A static file of the dashboard (ES module, stylesheet, icon); revalidated by ETag",
    params=STATIC_PARAMS,
    responses={200: "file", 404: "no such file"},
    tag="ui",
)
async def static_file(request: Request) -> Response:
    # A flat folder served through one described route (not a Mount), so /openapi.json lists it.
    name = parse_query(request, STATIC_PARAMS)["name"]
    return await _STATIC.get_response(name, request.scope)


@spec(
    "The operator dashboard (HTML page: Trading, Calibration, Drift, Admin / Job Center)",
    responses={200: "text/html page"},
    tag="ui",
)
async def dashboard(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hand_out_key(ctx: AppContext, client_host: str | None) -> str | None:
    """The key the page may receive without asking: embedded mode, loopback bind, loopback client."""
    s = ctx.settings
    if not s.API_KEYS or not s.TICKCAST_CLICKHOUSE_URL.startswith("chdb://"):
        return None
    if not (_is_loopback(s.TICKCAST_API_HOST) and _is_loopback(client_host)):
        return None
    return s.API_KEYS[0]


async def _symbols(ctx: AppContext) -> list[str]:
    found: set[str] = set()
    for query in ("market_symbols", "sentiment_symbols"):
        found.update(r["symbol"] for r in await blocking(ctx.store.named, query, {"limit": 500}))
    return sorted(found)


@spec(
    "Dashboard settings: freshness thresholds (VITE_*), drift defaults, calibration and accuracy thresholds, "
    "known symbols; in embedded mode on loopback also the API key (see api/routes_ui.py)",
    responses={200: "settings"},
    tag="ui",
)
async def ui_config(request: Request) -> Response:
    ctx = get_ctx(request)
    s = ctx.settings
    key = hand_out_key(ctx, request.client.host if request.client else None)
    return JSONResponse(
        {
            "auth_required": bool(s.API_KEYS),
            "api_key": key,
            "mode": "embedded" if s.TICKCAST_CLICKHOUSE_URL.startswith("chdb://") else "distributed",
            "symbols": await _symbols(ctx),
            "ema_windows": list(s.SENTIMENT_EMA_WINDOWS),
            "bar_step": s.SENTIMENT_STEP_DEFAULT,
            "freshness": {
                "risk_fresh_ms": s.VITE_RISK_FRESH_MS,
                "sig_fresh_ms": s.VITE_SIG_FRESH_MS,
                "severe_lag_mult": s.VITE_SEVERE_LAG_MULT,
            },
            "drift": {
                "window": drift_window_default(ctx),
                "z": drift_z_default(ctx),
                "backend_window": s.DRIFT_WINDOW,
                "backend_z": s.DRIFT_Z_THRESHOLD,
            },
            "calibration": {
                "bins": s.CALIBRATION_BINS,
                "min_bin_samples": s.CALIBRATION_MIN_BIN_SAMPLES,
                "wilson_z": s.CALIBRATION_WILSON_Z,
                "min_samples": s.CALIBRATION_DRIFT_MIN_SAMPLES,
                "window_seconds": s.CALIBRATION_MONITOR_WINDOW_SECONDS,
                "eval_every_s": s.CALIBRATION_EVAL_EVERY_SECONDS,
                "abs": s.CALIBRATION_MONITOR_ECE_DRIFT_ABS,
                "rel": s.CALIBRATION_MONITOR_ECE_DRIFT_REL,
                "abs_streak_trigger": s.CALIBRATION_MONITOR_ABS_STREAK_TRIGGER,
                "rel_streak_trigger": s.CALIBRATION_MONITOR_REL_STREAK_TRIGGER,
                "abs_delta_multiplier": s.CALIBRATION_ABS_DELTA_MULTIPLIER,
                "enter": s.CALIBRATION_HYSTERESIS_ENTER,
                "exit": s.CALIBRATION_HYSTERESIS_EXIT,
                "cooldown_s": s.CALIBRATION_RECOMMEND_COOLDOWN_SECONDS,
                "gate_brier_delta": s.CALIBRATION_GATE_BRIER_DELTA,
                "gate_prauc_delta": s.CALIBRATION_GATE_PRAUC_DELTA,
            },
            "accuracy": {
                "good": s.ACCURACY_GOOD,
                "warning": s.ACCURACY_WARNING,
                "window": s.ACCURACY_WINDOW,
                "trend_days": s.ACCURACY_TREND_DAYS,
            },
            "models": {
                "min_auc": s.INITIAL_MODEL_MIN_AUC,
                "max_ece": s.INITIAL_MODEL_MAX_ECE,
                "min_prauc": s.INITIAL_MODEL_MIN_PRAUC,
                "auto_promote": s.AUTO_PROMOTE_ENABLED,
                "auto_retrain": s.AUTO_RETRAIN_ENABLED,
                "promotion_cooldown_s": s.PROMOTION_COOLDOWN_SECONDS,
                "min_train_samples": s.MIN_TRAIN_SAMPLES,
            },
            "labeler": {"min_age": s.LABELER_MIN_AGE_SEC, "limit": s.LABELER_LIMIT, "force": True},
            "trading": {
                "enabled": s.TRADING_ENABLED,
                "account": s.TRADING_ACCOUNT,
                "interval": s.TRADING_INTERVAL,
                "entry": s.TRADING_ENTRY_THRESHOLD,
                "exit": s.TRADING_EXIT_THRESHOLD,
                "starting_equity": s.RISK_STARTING_EQUITY,
                "auto_loop_interval_ms": parse_duration_ms(s.VITE_INFERENCE_AUTO_LOOP_INTERVAL),
            },
            "sse": {
                "retry_ms": s.SSE_RETRY_MS,
                "keepalive_s": s.SSE_KEEPALIVE_SECONDS,
                "enabled": s.SENTIMENT_ENABLE_SSE,
            },
        },
        headers=_NO_CACHE,
    )


def drift_window_default(ctx: AppContext) -> int:
    s = ctx.settings
    return s.VITE_DRIFT_WINDOW_DEFAULT if s.VITE_DRIFT_WINDOW_DEFAULT is not None else s.DRIFT_WINDOW


def drift_z_default(ctx: AppContext) -> float:
    s = ctx.settings
    return s.VITE_DRIFT_Z_THRESHOLD_DEFAULT if s.VITE_DRIFT_Z_THRESHOLD_DEFAULT is not None else s.DRIFT_Z_THRESHOLD


# --- feature drift z ------------------------------------------------------------------------
def rolling_z(t: np.ndarray, values: np.ndarray, window: int, mu: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """z of the rolling mean of the last `window` present values, at each value from the window-th on.

    `z = (mean(v[i-window+1..i]) − μ_train) / (σ_train / √window)` — the rule of the flow's
    feature-drift ring (missing values are skipped, not counted).

    >>> rolling_z(np.arange(4), np.array([1.0, np.nan, 3.0, 5.0]), 2, 2.0, 1.0)[1].round(3).tolist()
    [0.0, 2.828]
    """
    ok = np.isfinite(values)
    v, tt = values[ok].astype(np.float64), t[ok]
    if v.size < window:
        return tt[:0], v[:0]
    csum = np.concatenate(([0.0], np.cumsum(v)))
    means = (csum[window:] - csum[:-window]) / window
    return tt[window - 1 :], (means - mu) / (sigma / math.sqrt(window))


def sample_at(times: np.ndarray, z_t: np.ndarray, z: np.ndarray) -> list[float | None]:
    """The latest z at or before each of `times` (None before the first)."""
    idx = np.searchsorted(z_t, times, side="right") - 1
    return [None if i < 0 else float(z[i]) for i in idx]


DRIFT_PARAMS = (
    Param(
        "window",
        "integer",
        minimum=2,
        maximum=100_000,
        description="values per rolling window; default VITE_DRIFT_WINDOW_DEFAULT, else DRIFT_WINDOW (200)",
    ),
    Param(
        "z",
        "number",
        minimum=0.01,
        maximum=1_000,
        description="|z| alarm threshold; default VITE_DRIFT_Z_THRESHOLD_DEFAULT, else DRIFT_Z_THRESHOLD (3.0)",
    ),
    Param("symbol", "symbol", description="only this symbol; default every symbol (as the flow's monitor)"),
    Param("interval", "string", enum=tuple(INTERVAL_MS), description="only this candle interval; default all"),
    Param(
        "history",
        "integer",
        default=1000,
        minimum=0,
        maximum=50_000,
        description="feature rows of z history before the newest (the chart span)",
    ),
    Param("points", "integer", default=120, minimum=2, maximum=1000, description="points per z series"),
    Param(
        "model_version",
        "string",
        pattern=r"[A-Za-z0-9._-]{1,128}",
        description="model whose train mean/std is the reference; default the production model",
    ),
)


def _reference_model(ctx: AppContext, version: str | None) -> dict[str, Any] | None:
    from models.registry import RegistryError

    registry = ctx.registry()
    version = version or registry.state()["production"]
    if version is None:
        return None
    try:
        return registry.metadata(version)  # type: ignore[no-any-return]
    except RegistryError:
        raise ApiError(404, f"unknown model version {version!r}; see GET /api/models") from None


def drift_report(table: Any, meta: dict[str, Any], window: int, z_thr: float, points: int) -> dict[str, Any]:
    """Per feature of the model: latest rolling mean and z, breach flag, z series at `points` times."""
    t = table.column("t").to_numpy().astype(np.int64) if table.num_rows else np.empty(0, np.int64)
    times = t[np.unique(np.linspace(0, t.size - 1, min(points, t.size)).round().astype(int))] if t.size else t
    mean, std = meta.get("train_mean") or {}, meta.get("train_std") or {}
    features = []
    for name in meta.get("feature_names") or []:
        mu, sigma = mean.get(name), std.get(name)
        if name not in FEATURE_COLUMNS or mu is None or not sigma:
            continue
        values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64) if t.size else np.empty(0)
        z_t, z = rolling_z(t, values, window, float(mu), float(sigma))
        present = values[np.isfinite(values)]
        latest = float(z[-1]) if z.size else None
        features.append(
            {
                "name": name,
                "train_mean": float(mu),
                "train_std": float(sigma),
                "n": int(min(present.size, window)),
                "mean": float(present[-window:].mean()) if present.size >= window else None,
                "z": latest,
                "breach": latest is not None and abs(latest) >= z_thr,
                "series": sample_at(times, z_t, z),
            }
        )
    return {"times": times.tolist(), "features": features}


@spec(
    "Feature drift: rolling z of each model feature's mean over the last `window` values against the model's "
    "training mean/std (z = (mean − μ)/(σ/√n)), with a z series for charts",
    params=DRIFT_PARAMS,
    responses={200: "per-feature z", 400: "bad parameter", 404: "unknown model version"},
    tag="calibration",
)
async def feature_drift(request: Request) -> Response:
    import sql

    ctx = get_ctx(request)
    q = parse_query(request, DRIFT_PARAMS)
    window = q["window"] or drift_window_default(ctx)
    z_thr = q["z"] or drift_z_default(ctx)
    body: dict[str, Any] = {
        "window": window,
        "z_threshold": z_thr,
        "symbol": q["symbol"],
        "interval": q["interval"],
        "defaults": {"window": drift_window_default(ctx), "z": drift_z_default(ctx)},
    }
    meta = await blocking(_reference_model, ctx, q["model_version"])
    if meta is None:
        return JSONResponse(
            {
                **body,
                "model_version": None,
                "rows": 0,
                "times": [],
                "features": [],
                "reason": "no production model yet: feature drift is measured against a model's "
                "training statistics (promote one in Admin)",
            }
        )
    table = await blocking(
        ctx.store.arrow,
        sql.query("feature_drift_rows"),
        {"symbol": q["symbol"] or "", "interval": q["interval"] or "", "limit": window + q["history"]},
    )
    report = await blocking(drift_report, table, meta, window, z_thr, q["points"])
    reason = (
        None
        if table.num_rows >= window
        else (f"only {table.num_rows} feature rows stored; a z needs {window} (the window)")
    )
    return JSONResponse(
        {**body, "model_version": meta.get("version"), "rows": table.num_rows, **report, "reason": reason}
    )


# --- provider mix -----------------------------------------------------------------------------
PROVIDER_PARAMS = (
    Param("symbol", "symbol", required=True, description="symbol, e.g. XRPUSDT"),
    Param(
        "minutes",
        "integer",
        default=60,
        minimum=1,
        maximum=7 * 1440,
        description="minutes before the symbol's newest tick",
    ),
)


@spec(
    "Sentiment provider mix of a symbol: ticks, trust weight and mean score per provider over the last "
    "`minutes` of event time",
    params=PROVIDER_PARAMS,
    responses={200: "providers", 400: "bad parameter"},
    tag="sentiment",
)
async def provider_mix(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, PROVIDER_PARAMS)
    rows = await blocking(ctx.store.named, "feature_provider_mix", {"symbol": q["symbol"], "minutes": q["minutes"]})
    total = sum(int(r["ticks"]) for r in rows) or 1
    providers = [
        {
            "provider": r["provider"],
            "ticks": int(r["ticks"]),
            "share": int(r["ticks"]) / total,
            "weight": float(r["weight"]),
            "mean_score": float(r["mean_score"]),
            "positive": int(r["positive"]),
        }
        for r in rows
    ]
    return JSONResponse(
        {
            "symbol": q["symbol"],
            "minutes": q["minutes"],
            "end_ms": int(rows[0]["end_ms"]) if rows else None,
            "providers": providers,
        }
    )


routes = [
    Route("/", dashboard, methods=["GET"]),
    Route("/ui", dashboard, methods=["GET"]),
    Route("/api/ui-config", ui_config, methods=["GET"]),
    Route("/api/drift/features", feature_drift, methods=["GET"]),
    Route("/api/sentiment/providers", provider_mix, methods=["GET"]),
    Route("/static/{name}", static_file, methods=["GET"]),
]
