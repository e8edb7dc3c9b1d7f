"""Model registry reads and admin operations (seed 004): retrain, promote, rollback, restore, providers.

Dangerous operations (promote, rollback, restore) change what the flow serves. Without
`"confirm": true` they answer 409 with exactly what would happen and how to confirm.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.known import check_provider
from api.schemas import ANY, BOOL, JOB_STARTED, NUM, STR, arr, nullable, obj
from api.validation import NAME_RE, Field, object_schema, read_command, spec
from tickcast.jobs import UnknownJobKind

log = logging.getLogger(__name__)
VERSION_RE = r"[A-Za-z0-9._-]{1,128}"
CONFIRM = Field("confirm", "boolean", default=False, description="must be true to perform the operation")
PROMOTE_FIELDS = (
    Field(
        "version",
        "string",
        required=True,
        pattern=VERSION_RE,
        description="model version to make production",
        example="m20251121T101500Z-ab12cd",
    ),
    CONFIRM,
    Field("force", "boolean", default=False, description="ignore the promotion cooldown"),
)
ROLLBACK_FIELDS = (CONFIRM,)
RESTORE_FIELDS = (
    Field(
        "version",
        "string",
        required=True,
        pattern=VERSION_RE,
        description="model version to restore from backups/",
        example="m20251121T101500Z-ab12cd",
    ),
    CONFIRM,
)
RETRAIN_FIELDS = (Field("reason", "string", default="", description="free text kept with the job"),)
PROVIDER_FIELDS = (
    Field(
        "provider",
        "string",
        required=True,
        pattern=NAME_RE.pattern.strip("^$"),
        description="sentiment provider to re-enable, e.g. newsapi",
        example="newsapi",
    ),
)


_SUMMARY_KEYS = (
    "version",
    "status",
    "created_at",
    "status_changed_at",
    "sha256",
    "kind",
    "parent_version",
    "estimator",
    "ece_prod",
    "brier_prod",
    "pr_auc_prod",
    "roc_auc",
    "baseline_brier",
    "beats_baseline",
    "gates",
    "time_range",
    "counts",
    "symbols",
    "feature_names",
    "temperature",
    "restored_at",
)
MODEL = obj(
    {k: {"version": STR, "status": STR}.get(k, ANY) for k in _SUMMARY_KEYS},
    optional=_SUMMARY_KEYS,
    description="a model's registry metadata (the keys it has)",
)
MODEL_LISTED = obj(
    {**MODEL["properties"], "has_backup": BOOL},
    optional=_SUMMARY_KEYS,
    description="a model's registry metadata (the keys it has) and whether backups/ holds a copy to restore",
)
PROVIDER_SENT = obj({"provider": STR, "sent": STR})


def _max_body(ctx: AppContext) -> int:
    return min(ctx.settings.API_MAX_BODY_BYTES, 65_536)


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in _SUMMARY_KEYS if k in meta}


# --- public reads -------------------------------------------------------------------------
@spec(
    "Model registry: every version with status and metrics, and the production version",
    tag="models",
    responses={200: "models"},
    returns=obj({"production": nullable(STR), "models": arr(MODEL_LISTED)}),
)
async def list_models(request: Request) -> Response:
    ctx = get_ctx(request)

    def read() -> dict[str, Any]:
        registry = ctx.registry()
        return {
            "production": registry.state()["production"],
            # has_backup: a copy in backups/ exists, so "restore" can do something
            "models": [{**_summary(m), "has_backup": registry.has_backup(m["version"])} for m in registry.list()],
        }

    return JSONResponse(await blocking(read))


@spec(
    "Promotion status: production version, last promotion, cooldown and next allowed time",
    tag="models",
    responses={200: "status"},
    returns=obj(
        {
            "production": nullable(STR),
            "last_promoted_at": nullable(NUM),
            "cooldown_s": NUM,
            "next_allowed_at": nullable(NUM),
            "in_cooldown": BOOL,
        },
        closed=False,  # built by models.registry (it may add keys)
    ),
)
async def promotion_status(request: Request) -> Response:
    ctx = get_ctx(request)
    cooldown = ctx.settings.PROMOTION_COOLDOWN_SECONDS
    return JSONResponse(await blocking(lambda: ctx.registry().promotion_status(cooldown_s=cooldown)))


# --- dangerous operations -----------------------------------------------------------------
def _needs_confirm(action: str, plan: dict[str, Any], body_example: dict[str, Any]) -> ApiError:
    return ApiError(
        409,
        f'{action} not performed: {plan["description"]}. To do it, resend with "confirm": true',
        plan=plan,
        confirm_with=body_example,
    )


def _metadata_or_404(registry: Any, version: str) -> dict[str, Any]:
    from models.registry import RegistryError

    try:
        return registry.metadata(version)
    except RegistryError:
        known = [m["version"] for m in registry.list()][-10:]
        raise ApiError(
            404, f"unknown model version {version!r}; known versions: {', '.join(known) or 'none'} (GET /api/models)"
        ) from None


@spec(
    "Make a model version production (dangerous: needs confirm=true)",
    body=object_schema(PROMOTE_FIELDS),
    auth=True,
    tag="admin",
    responses={200: "promoted", 404: "unknown version", 409: "needs confirm, cooldown or rejected model"},
    returns=obj({"promoted": STR, "previous_production": nullable(STR), "model": MODEL}),
)
async def promote(request: Request) -> Response:
    from models.registry import PromotionRefused, RegistryError

    ctx = get_ctx(request)
    body = await read_command(request, PROMOTE_FIELDS, _max_body(ctx))
    version = body["version"]

    def run() -> dict[str, Any]:
        registry = ctx.registry()
        meta = _metadata_or_404(registry, version)
        current = registry.state()["production"]
        if meta.get("status") == "rejected":
            failures = "; ".join((meta.get("gates") or {}).get("failures") or []) or "see GET /api/models"
            raise ApiError(
                409,
                f"model {version} failed its gates ({failures}) and can never be promoted; "
                "train a new one (POST /admin/manual-retrain)",
                reason="rejected",
            )
        if not body["confirm"]:
            plan = {
                "action": "promote",
                "current_production": current,
                "new_production": version,
                "candidate_status": meta.get("status"),
                # code + params: the page says it in the reader's language (api/static/i18n_*.js)
                "code": "plan.promote.archive" if current else "plan.promote",
                "params": {"current": current or "baseline", "new": version},
                "description": f"production would change from {current or 'none (baseline)'} to {version}"
                + (f"; {current} would become archived (rollback target)" if current else ""),
            }
            raise _needs_confirm("promotion", plan, {"version": version, "confirm": True})
        try:
            promoted = registry.promote(
                version,
                auto_promote_enabled=True,
                cooldown_s=ctx.settings.PROMOTION_COOLDOWN_SECONDS,
                force=body["force"],
            )
        except PromotionRefused as exc:
            hint = '; resend with "force": true to override it' if exc.reason == "cooldown" else ""
            raise ApiError(
                409,
                f"{exc}{hint}",
                reason=exc.reason,
                code=f"promotion.{exc.reason}",
                params={"next_allowed_at": exc.next_allowed_at, "version": version},
                next_allowed_at=exc.next_allowed_at,
            ) from None
        except RegistryError as exc:
            raise ApiError(409, str(exc)) from None
        return {"promoted": version, "previous_production": current, "model": _summary(promoted)}

    return JSONResponse(await blocking(run))


@spec(
    "Roll production back to the previous model (dangerous: needs confirm=true)",
    body=object_schema(ROLLBACK_FIELDS),
    auth=True,
    tag="admin",
    responses={200: "rolled back", 409: "needs confirm or nothing to roll back to"},
    returns=obj({"production": STR, "previous_production": nullable(STR), "model": MODEL}),
)
async def rollback(request: Request) -> Response:
    from models.registry import RegistryError

    ctx = get_ctx(request)
    body = await read_command(request, ROLLBACK_FIELDS, _max_body(ctx))

    def run() -> dict[str, Any]:
        registry = ctx.registry()
        state = registry.state()
        current, target = state["production"], state["previous"]
        if target is None:
            raise ApiError(
                409,
                "nothing to roll back to: no previous production model is recorded "
                "(promote a version instead: POST /admin/models/promote)",
            )
        if not body["confirm"]:
            plan = {
                "action": "rollback",
                "current_production": current,
                "new_production": target,
                "code": "plan.rollback",
                "params": {"current": current or "baseline", "new": target},
                "description": f"production would change from {current or 'none'} back to {target}; "
                f"{current or 'the current model'} would become archived",
            }
            raise _needs_confirm("rollback", plan, {"confirm": True})
        try:
            restored = registry.rollback()
        except RegistryError as exc:
            raise ApiError(409, str(exc)) from None
        return {"production": restored["version"], "previous_production": current, "model": _summary(restored)}

    return JSONResponse(await blocking(run))


@spec(
    "Restore a model version's files from backups/ after a sha256 check (dangerous: needs confirm=true)",
    body=object_schema(RESTORE_FIELDS),
    auth=True,
    tag="admin",
    responses={200: "restored", 404: "no backup", 409: "needs confirm or corrupt backup"},
    returns=obj({"restored": STR, "production": nullable(STR), "model": MODEL}),
)
async def restore(request: Request) -> Response:
    from models.registry import RegistryError

    ctx = get_ctx(request)
    body = await read_command(request, RESTORE_FIELDS, _max_body(ctx))
    version = body["version"]

    def run() -> dict[str, Any]:
        registry = ctx.registry()
        if not (registry.backups / f"{version}.json").exists():
            backups = sorted(p.stem for p in registry.backups.glob("*.json"))[-10:]
            raise ApiError(
                404, f"no backup of {version!r} in {registry.backups}; backups: {', '.join(backups) or 'none'}"
            )
        current = registry.state()["production"]
        if not body["confirm"]:
            plan = {
                "action": "restore",
                "version": version,
                "current_production": current,
                "new_production": current,
                "code": "plan.restore.reload" if version == current else "plan.restore",
                "params": {"version": version, "current": current or "baseline"},
                "description": f"the files of {version} in trained/ would be replaced by the copies in backups/ "
                f"(after a sha256 check); production stays {current or 'none'}"
                + (" and the flow reloads it" if version == current else ""),
            }
            raise _needs_confirm("restore", plan, {"version": version, "confirm": True})
        try:
            meta = registry.restore(version)
        except RegistryError as exc:  # CorruptModel included
            raise ApiError(409, str(exc)) from None
        return {"restored": version, "production": current, "model": _summary(meta)}

    return JSONResponse(await blocking(run))


# --- retrain, scheduler, providers ---------------------------------------------------------
def _running_view(job: dict[str, Any] | None, job_id: str) -> dict[str, Any]:
    job = job or {}
    return {
        "job_id": job_id,
        "kind": job.get("kind"),
        "trigger": job.get("trigger"),
        "status": job.get("status"),
        "progress": job.get("progress"),
        "started_at": job.get("started_at"),
    }


async def _job_view(ctx: AppContext, job_id: str, kind: str, trigger: str, already: bool) -> JSONResponse:
    """202 for a started job; 200 with *the running job* (its own trigger, not the one asked for)
    and `already_running` when one of the kind was active."""
    body: dict[str, Any] = {
        "job_id": job_id,
        "kind": kind,
        "trigger": trigger,
        "already_running": already,
        "status_url": f"/admin/jobs/{job_id}",
    }
    if already:
        running = _running_view(await blocking(ctx.jobs.get, job_id), job_id)
        body.update(trigger=running["trigger"] or trigger, requested_trigger=trigger, running_job=running)
    return JSONResponse(body, status_code=200 if already else 202)


def _take_job_token(ctx: AppContext, kind: str) -> None:
    """429 with Retry-After when the API started too many `kind` jobs lately (api/ratelimit.py)."""
    wait = ctx.job_limiter.take(kind)
    if wait is None:
        return
    s = ctx.settings
    retry = max(1, math.ceil(wait))
    log.warning("job start refused: too many %r jobs started over the API; next allowed in %d s", kind, retry)
    raise ApiError(
        429,
        f"too many {kind!r} jobs started over the API: at most {s.API_JOB_RATE_BURST} back to back and "
        f"{s.API_JOB_RATE_PER_HOUR} per hour (API_JOB_RATE_BURST, API_JOB_RATE_PER_HOUR); retry in {retry} s",
        headers={"Retry-After": str(retry)},
        kind=kind,
        retry_after_s=retry,
    )


async def start_job(ctx: AppContext, kind: str, params: dict[str, Any], trigger: str) -> Response:
    """Start a job of `kind` unless one is running (200 with that job) or the API started too many
    lately (429 with Retry-After: api/ratelimit.py)."""
    running = ctx.jobs.active(kind)
    if running is not None:
        return await _job_view(ctx, running, kind, trigger, True)
    _take_job_token(ctx, kind)
    try:
        job_id = await blocking(ctx.jobs.start, kind, params, trigger=trigger)  # writes the 'queued' row
    except UnknownJobKind as exc:
        ctx.job_limiter.give_back(kind)
        raise ApiError(503, f"{exc}; run the API together with the flow (`tickcast up`) to get {kind!r} jobs") from None
    already = bool(getattr(job_id, "already_running", False))
    if already:
        ctx.job_limiter.give_back(kind)
    return await _job_view(ctx, str(job_id), kind, trigger, already)


@spec(
    "Start a retrain now (job kind 'train', trigger manual)",
    body=object_schema(RETRAIN_FIELDS),
    auth=True,
    tag="admin",
    responses={202: "job started", 200: "a train job is already running", 503: "no train job"},
    returns=JOB_STARTED,
    rate_limited=True,
)
async def manual_retrain(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, RETRAIN_FIELDS, _max_body(ctx))
    return await start_job(ctx, "train", {"reason": body["reason"]} if body["reason"] else {}, "manual")


@spec(
    "Start an emergency retrain (job kind 'train', trigger emergency). While a train job runs, nothing is "
    "started: 409 names the running job (it retrains on the same data); every request is counted in "
    'ml_emergency_retrain_requests_total{source="api",outcome}',
    body=object_schema(RETRAIN_FIELDS),
    auth=True,
    tag="admin",
    responses={202: "job started", 409: "a train job is already running (its id and trigger)", 503: "no train job"},
    returns=JOB_STARTED,
    rate_limited=True,
)
async def emergency_retrain(request: Request) -> Response:
    from tickcast import metrics

    ctx = get_ctx(request)
    body = await read_command(request, RETRAIN_FIELDS, _max_body(ctx))
    params = {"reason": body["reason"] or "emergency", "emergency": True}
    if ctx.jobs.active("train") is None:
        _take_job_token(ctx, "train")
    for _attempt in range(2):  # the running job may finish between the two calls: then start ours
        try:
            job_id = await blocking(ctx.jobs.start, "train", params, trigger="emergency")
        except UnknownJobKind as exc:
            metrics.EMERGENCY_RETRAIN_REQUESTS.labels("api", "unavailable").inc()
            raise ApiError(
                503, f"{exc}; run the API together with the flow (`tickcast up`) to get 'train' jobs"
            ) from None
        if not getattr(job_id, "already_running", False):
            break
        running = _running_view(await blocking(ctx.jobs.get, str(job_id)), str(job_id))
        if running["status"] in ("queued", "running"):
            break
    if getattr(job_id, "already_running", False):
        metrics.EMERGENCY_RETRAIN_REQUESTS.labels("api", "already_running").inc()
        raise ApiError(
            409,
            f"emergency retrain not started: train job {job_id} (trigger {running['trigger']}, "
            f"{running['status']}) is already running on the same data; follow it at /admin/jobs/{job_id} "
            "and send the emergency retrain again once it has finished if its model does not help",
            code="retrain.busy",
            params={"job_id": str(job_id), "trigger": running["trigger"], "status": running["status"]},
            outcome="already_running",
            job_id=str(job_id),
            running_job=running,
            status_url=f"/admin/jobs/{job_id}",
        )
    metrics.EMERGENCY_RETRAIN_REQUESTS.labels("api", "started").inc()
    return JSONResponse(
        {
            "job_id": str(job_id),
            "kind": "train",
            "trigger": "emergency",
            "already_running": False,
            "outcome": "started",
            "status_url": f"/admin/jobs/{job_id}",
        },
        status_code=202,
    )


@spec(
    "Start a recalibration: refit only the production model's temperature on recent labeled data "
    "(job kind 'recalibrate')",
    body=object_schema(RETRAIN_FIELDS),
    auth=True,
    tag="admin",
    responses={202: "job started", 200: "a recalibrate job is already running", 503: "no recalibrate job"},
    returns=JOB_STARTED,
    rate_limited=True,
)
async def recalibrate(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, RETRAIN_FIELDS, _max_body(ctx))
    return await start_job(ctx, "recalibrate", {"reason": body["reason"]} if body["reason"] else {}, "manual")


@spec(
    "Retrain scheduler: crontab, time zone, next run, last scheduled run",
    auth=True,
    tag="admin",
    responses={200: "status"},
    returns=obj(
        {"enabled": BOOL, "schedule": STR, "timezone": STR, "next_run": nullable(STR), "last_run": ANY},
        closed=False,  # built by tickcast.scheduler (it may add keys)
    ),
)
async def scheduler_status(request: Request) -> Response:
    ctx = get_ctx(request)
    if ctx.scheduler is not None:
        return JSONResponse(await blocking(ctx.scheduler.status))
    from tickcast.scheduler import RetrainScheduler

    # No scheduler in this process: report the schedule it would follow, disabled.
    return JSONResponse(await blocking(RetrainScheduler(ctx.jobs, ctx.settings).status))


@spec(
    "Re-enable a sentiment provider the flow disabled after repeated failures",
    auth=True,
    tag="admin",
    body=object_schema(PROVIDER_FIELDS),
    responses={
        202: "control record sent",
        404: "unknown provider",
        422: "bad provider name",
        503: "the dataflow is not taking records",
    },
    returns=PROVIDER_SENT,
)
async def enable_provider(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, PROVIDER_FIELDS, _max_body(ctx))
    await check_provider(ctx, body["provider"])
    try:
        await blocking(ctx.ingest, [{"_control": "enable_provider", "provider": body["provider"]}])
    except Exception as exc:
        raise ApiError(503, f"the dataflow is not taking records right now ({exc}); retry shortly") from exc
    return JSONResponse({"provider": body["provider"], "sent": "enable_provider"}, status_code=202)


routes = [
    Route("/api/models", list_models, methods=["GET"]),
    Route("/api/models/promotion-status", promotion_status, methods=["GET"]),
    Route("/admin/models/promote", promote, methods=["POST"]),
    Route("/admin/models/rollback", rollback, methods=["POST"]),
    Route("/admin/models/restore", restore, methods=["POST"]),
    Route("/admin/manual-retrain", manual_retrain, methods=["POST"]),
    Route("/admin/emergency-retrain", emergency_retrain, methods=["POST"]),
    Route("/admin/recalibrate", recalibrate, methods=["POST"]),
    Route("/admin/scheduler-status", scheduler_status, methods=["GET"]),
    Route("/admin/providers/enable", enable_provider, methods=["POST"]),
]
