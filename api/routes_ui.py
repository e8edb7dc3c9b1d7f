"""The operator dashboard: the page (`/`, `/ui`, `/static/*`) and the reads only it needs.

The page is plain ES modules and hand-written SVG under `api/static/` — no build step,
nothing fetched from a CDN. It learns its settings from `GET /api/ui-config`.

API key hand-off: in embedded mode (`chdb://` store, so `tickcast up`), with the API bound
to a loopback host and the request coming from loopback, `/api/ui-config` includes the first
of `API_KEYS`, so the quick start works without typing a key — and only when the request
names a loopback `Host` (a DNS-rebinding page sends its own name, e.g. `Host: evil.test:8000`)
and is same-origin (`Sec-Fetch-Site` absent, `same-origin` or `none`; `Origin`, when sent, equal to
the page's own). Anywhere else the page asks for the key and keeps it in localStorage.
docs/decisions.md "Security at the HTTP edge" says why not a per-process token.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.known import check_symbols
from api.schemas import BOOL, INT, MS, NUM, STR, arr, nullable, obj
from api.validation import Param, parse_query, spec
from tickcast.records import INTERVAL_MS
from tickcast.settings import parse_duration_ms
from tickcast.store import StoreMode

log = logging.getLogger(__name__)
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
_UI_GROUPS = ("freshness", "drift", "calibration", "accuracy", "models", "labeler", "sse", "trading")
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
        example="app.js",
    ),
)


def static_media_types() -> list[str]:
    """The content types the static route serves (as Starlette's FileResponse guesses them)."""
    import mimetypes

    return sorted({mimetypes.guess_type(p.name)[0] or "text/plain" for p in STATIC_DIR.iterdir() if p.is_file()})


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


def host_name(host_header: str | None) -> str | None:
    """The name in a Host header without its port: 'localhost:8000' -> 'localhost', '[::1]:80' -> '[::1]'."""
    if not host_header:
        return None
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1] or None
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def hand_out_key(
    ctx: AppContext,
    client_host: str | None,
    *,
    host_header: str | None,
    origin: str | None = None,
    fetch_site: str | None = None,
    scheme: str = "http",
) -> str | None:
    """The key the page may receive without asking: embedded mode, loopback bind, loopback client,
    a loopback Host header, and a same-origin request."""
    s = ctx.settings
    if not s.API_KEYS or s.store_mode is not StoreMode.EMBEDDED:
        return None
    if not (_is_loopback(s.TICKCAST_API_HOST) and _is_loopback(client_host)):
        return None
    if not _is_loopback(host_name(host_header)):
        # DNS rebinding: the browser names the attacker's host
        log.warning("API key not handed out: request from loopback with Host %r (not a loopback name)", host_header)
        return None
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return None  # a request made by another site's page
    if origin is not None and origin != f"{scheme}://{host_header}":
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
    returns=obj(
        {
            "auth_required": BOOL,
            "api_key": nullable(STR),
            "mode": {"type": "string", "enum": ["embedded", "distributed"]},
            "symbols": arr(STR),
            "ema_windows": arr(STR),
            "bar_step": STR,
            **{group: {"type": "object"} for group in _UI_GROUPS},
        },
        closed=False,  # a settings bag: each area adds its own keys
    ),
)
async def ui_config(request: Request) -> Response:
    ctx = get_ctx(request)
    s = ctx.settings
    key = hand_out_key(
        ctx,
        request.client.host if request.client else None,
        host_header=request.headers.get("host"),
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
        scheme=request.url.scheme,
    )
    return JSONResponse(
        {
            "auth_required": bool(s.API_KEYS),
            "api_key": key,
            "mode": "embedded" if s.store_mode is StoreMode.EMBEDDED else "distributed",
            # VITE_USE_MOCKS=1: the page runs on mock data and mock streams (api/static/mocks.js)
            "use_mocks": s.VITE_USE_MOCKS,
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
    Param(
        "end",
        "timestamp",
        description="evaluate at this close_time (epoch ms or ISO-8601): the rows the flow had then; default now",
    ),
)


def _reference_model(ctx: AppContext, version: str | None) -> dict[str, Any] | None:
    from models.registry import RegistryError

    registry = ctx.registry()
    version = version or registry.state()["production"]
    if version is None:
        return None
    try:
        return registry.metadata(version)
    except RegistryError:
        raise ApiError(404, f"unknown model version {version!r}; see GET /api/models") from None


def drift_report(
    table: Any, meta: dict[str, Any], window: int, z_thr: float, points: int, flow_state: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per feature of the model: the latest window mean and z (`models.feature_drift.rolling_z`, the
    flow's rule), the breach flag for `z_thr`, the flow's own drift state, and a z series."""
    from models.feature_drift import reference_of, rolling_z

    t = table.column("t").to_numpy().astype(np.int64) if table.num_rows else np.empty(0, np.int64)
    times = t[np.unique(np.linspace(0, t.size - 1, min(points, t.size)).round().astype(int))] if t.size else t
    features = []
    for name, (mu, sigma) in reference_of(meta).items():
        if name not in FEATURE_COLUMNS:
            continue
        values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64) if t.size else np.empty(0)
        z_t, z = rolling_z(t, values, window, mu, sigma)
        present = values[np.isfinite(values)]
        latest = float(z[-1]) if z.size else None
        state = flow_state.get(name)
        features.append(
            {
                "name": name,
                "train_mean": mu,
                "train_std": sigma,
                "n": int(min(present.size, window)),
                "mean": float(present[-window:].mean()) if present.size >= window else None,
                "z": latest,
                "breach": latest is not None and abs(latest) >= z_thr,
                # what the flow decided (its drift events): drifting until |z| < REARM x threshold
                "flow_drifting": bool(state and state["last_kind"] == "feature_drift"),
                "flow_since": state["last_ms"] if state and state["last_kind"] == "feature_drift" else None,
                "series": sample_at(times, z_t, z),
            }
        )
    return {"times": times.tolist(), "features": features}


_MAX_DRIFT_ROWS = 400_000


def _drift_rows(ctx: AppContext, meta: dict[str, Any], q: dict[str, Any], window: int, end: int) -> Any:
    """The newest rows up to `end` holding at least `window` + `history` present values of every
    model feature (missing values do not count, as in the flow's rings): fetch more while short."""
    import sql
    from models.feature_drift import reference_of

    names = [n for n in reference_of(meta) if n in FEATURE_COLUMNS]
    need = window + q["history"]
    limit = need
    while True:
        args = {"symbol": q["symbol"] or "", "interval": q["interval"] or "", "limit": limit, "end": end}
        table = ctx.store.arrow(sql.query("feature_drift_rows"), args)
        short = any(table.num_rows - table.column(n).null_count < need for n in names) if table.num_rows else False
        if not short or table.num_rows < limit or limit >= _MAX_DRIFT_ROWS:
            return table
        limit = min(limit * 2, _MAX_DRIFT_ROWS)


@spec(
    "Feature drift: rolling z of each model feature's mean over the last `window` values against the model's "
    "training mean/std (z = (mean − μ)/(σ/√n), models/feature_drift.py — the flow's own rule on the same rows), "
    "the flow's drift state per feature (its drift events), and a z series for charts",
    params=DRIFT_PARAMS,
    responses={200: "per-feature z", 400: "bad parameter", 404: "unknown model version or symbol"},
    tag="calibration",
    returns=obj(
        {
            "window": INT,
            "z_threshold": NUM,
            "symbol": nullable(STR),
            "interval": nullable(STR),
            "defaults": obj({"window": INT, "z": NUM}),
            "model_version": nullable(STR),
            "rows": INT,
            "times": arr(MS),
            "features": arr(
                obj(
                    {
                        "name": STR,
                        "train_mean": NUM,
                        "train_std": NUM,
                        "n": INT,
                        "mean": nullable(NUM),
                        "z": nullable(NUM),
                        "breach": BOOL,
                        "flow_drifting": BOOL,
                        "flow_since": nullable(MS),
                        "series": arr(nullable(NUM)),
                    }
                )
            ),
            "flow": obj({"window": INT, "z": NUM, "rearm_below": NUM}),
            "same_as_flow": BOOL,
            "reason": nullable(STR),
        }
    ),
)
async def feature_drift(request: Request) -> Response:
    import time

    from models.feature_drift import REARM

    ctx = get_ctx(request)
    s = ctx.settings
    q = parse_query(request, DRIFT_PARAMS)
    if q["symbol"] is not None:
        await check_symbols(ctx, [q["symbol"]])
    window = q["window"] or drift_window_default(ctx)
    z_thr = q["z"] or drift_z_default(ctx)
    end = q["end"] if q["end"] is not None else int(time.time() * 1000) + 86_400_000
    flow_rule = {"window": s.DRIFT_WINDOW, "z": s.DRIFT_Z_THRESHOLD, "rearm_below": REARM * s.DRIFT_Z_THRESHOLD}
    same_rule = window == s.DRIFT_WINDOW and z_thr == s.DRIFT_Z_THRESHOLD and not q["symbol"] and not q["interval"]
    body: dict[str, Any] = {
        "window": window,
        "z_threshold": z_thr,
        "symbol": q["symbol"],
        "interval": q["interval"],
        "defaults": {"window": drift_window_default(ctx), "z": drift_z_default(ctx)},
        "flow": flow_rule,
        # True: these are the flow's numbers; False: a what-if next to the flow's state
        "same_as_flow": same_rule,
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
    table = await blocking(_drift_rows, ctx, meta, q, window, end)
    state_rows = await blocking(
        ctx.store.named, "feature_drift_state", {"model_version": str(meta.get("version")), "end": end}
    )
    flow_state = {row["feature"]: row for row in state_rows}
    report = await blocking(drift_report, table, meta, window, z_thr, q["points"], flow_state)
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
    Param("symbol", "symbol", required=True, description="symbol, e.g. XRPUSDT", example="XRPUSDT"),
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
    responses={200: "providers", 400: "bad parameter", 404: "unknown symbol"},
    tag="sentiment",
    returns=obj(
        {
            "symbol": STR,
            "minutes": INT,
            "end_ms": nullable(MS),
            "providers": arr(
                obj(
                    {
                        "provider": STR,
                        "ticks": INT,
                        "share": NUM,
                        "weight": NUM,
                        "mean_score": NUM,
                        "positive": INT,
                    }
                )
            ),
        }
    ),
)
async def provider_mix(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, PROVIDER_PARAMS)
    await check_symbols(ctx, [q["symbol"]])
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
