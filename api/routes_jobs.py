"""Job center endpoints (seed 000 "Job Center"): list, inspect, labeler run, backfill."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import AppContext, blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.known import check_job_kind
from api.routes_admin import start_job
from api.schemas import INT, JOB, JOB_STARTED, STR, arr, obj
from api.validation import Field, Param, object_schema, parse_query, read_command, spec
from tickcast.records import INPUT_SUFFIXES

LIST_PARAMS = (
    Param(
        "kind", "string", pattern=r"[A-Za-z0-9_]{1,64}", description="only this job kind (train, labeler, backfill…)"
    ),
    Param("limit", "integer", default=50, minimum=1, maximum=1000, description="newest jobs to return"),
)
GET_PARAMS = (Param("job_id", "string", location="path", pattern=r"[A-Za-z0-9_-]{1,64}", description="job id"),)
LABELER_FIELDS = (
    Field(
        "min_age",
        "integer",
        minimum=0,
        maximum=30 * 86_400,
        description="seconds a candle must be old before labeling; default LABELER_MIN_AGE_SEC (120)",
    ),
    Field("limit", "integer", minimum=1, maximum=1_000_000, description="max rows; default LABELER_LIMIT (1000)"),
    Field("force", "boolean", default=True, description="relabel rows that already have a label"),
)
BACKFILL_FIELDS = (
    Field(
        "inputs",
        "array",
        required=True,
        description="JSONL/Parquet files or folders to replay through the flow: paths on the API host, under "
        "one of BACKFILL_INPUT_ROOTS (default ./var and the system temp dir)",
        max_length=1000,
        min_items=1,
        example=["./var/backfill/ticks.jsonl"],
    ),
)


@spec(
    "Jobs, newest first (progress, status, result or error)",
    params=LIST_PARAMS,
    auth=True,
    tag="jobs",
    responses={200: "jobs"},
    returns=obj({"count": INT, "jobs": arr(JOB), "kinds": arr(STR)}),
)
async def list_jobs(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, LIST_PARAMS)
    await check_job_kind(ctx, q["kind"])
    jobs = await blocking(ctx.jobs.list, q["kind"], q["limit"])
    return JSONResponse({"count": len(jobs), "jobs": jobs, "kinds": ctx.jobs.kinds()})


@spec(
    "One job by id",
    params=GET_PARAMS,
    auth=True,
    tag="jobs",
    responses={200: "job", 404: "unknown job"},
    returns=JOB,
)
async def get_job(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, GET_PARAMS)
    job = await blocking(ctx.jobs.get, q["job_id"])
    if job is None:
        raise ApiError(404, f"no job {q['job_id']!r}; list jobs with GET /admin/jobs")
    return JSONResponse(job)


@spec(
    "Run the labeler once (job kind 'labeler'; seed defaults min_age=120 s, limit=1000, force=true)",
    body=object_schema(LABELER_FIELDS),
    auth=True,
    tag="jobs",
    responses={202: "job started", 200: "already running", 422: "bad field", 503: "no labeler job"},
    returns=JOB_STARTED,
    rate_limited=True,
)
async def run_labeler(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, LABELER_FIELDS, 65_536)
    params = {
        "min_age": ctx.settings.LABELER_MIN_AGE_SEC if body["min_age"] is None else body["min_age"],
        "limit": ctx.settings.LABELER_LIMIT if body["limit"] is None else body["limit"],
        "force": body["force"],
    }
    return await start_job(ctx, "labeler", params, "api")


def allowed_roots(ctx: AppContext) -> list[Path]:
    return [Path(os.path.expanduser(r)).resolve() for r in ctx.settings.BACKFILL_INPUT_ROOTS]


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_inputs(inputs: list[str], roots: list[Path]) -> list[str]:
    """The inputs as absolute paths: each one, and every file a folder holds, must resolve (symlinks
    followed) under one of `roots`; 403 naming the roots otherwise, 422 for a missing input."""
    shown = ", ".join(str(r) for r in roots) or "none (BACKFILL_INPUT_ROOTS is empty: backfill over the API is off)"
    outside, missing, resolved = [], [], []
    for raw in inputs:
        try:
            path = Path(os.path.expanduser(raw)).resolve()
            exists = path.exists()
        except (OSError, ValueError, RuntimeError):  # name too long, NUL byte, symlink loop...
            missing.append(raw)
            continue
        if not _under(path, roots):
            outside.append(raw)
        elif not exists:
            missing.append(raw)
        elif path.is_dir():
            inside = [p for p in path.rglob("*") if p.suffix in INPUT_SUFFIXES and p.is_file()]
            outside += [str(p) for p in inside if not _under(p.resolve(), roots)]
            resolved.append(str(path))
        else:
            resolved.append(str(path))
    if outside:
        raise ApiError(
            403,
            f"backfill reads only files under BACKFILL_INPUT_ROOTS ({shown}); outside: {', '.join(outside[:10])}",
            outside=outside[:100],
            allowed_roots=[str(r) for r in roots],
        )
    if missing:
        raise ApiError(422, f"input(s) not found on the API host: {', '.join(missing[:10])}", missing=missing[:100])
    return resolved


@spec(
    "Replay JSONL/Parquet files through the flow (job kind 'backfill')",
    body=object_schema(BACKFILL_FIELDS),
    auth=True,
    tag="jobs",
    responses={
        202: "job started",
        200: "already running",
        403: "an input outside BACKFILL_INPUT_ROOTS",
        422: "bad or missing inputs",
        503: "no backfill job",
    },
    returns=JOB_STARTED,
    rate_limited=True,
)
async def backfill(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, BACKFILL_FIELDS, 1_048_576)
    inputs = await blocking(check_inputs, body["inputs"], allowed_roots(ctx))
    return await start_job(ctx, "backfill", {"inputs": inputs}, "api")


routes = [
    Route("/admin/jobs", list_jobs, methods=["GET"]),
    Route("/admin/jobs/backfill", backfill, methods=["POST"]),
    Route("/admin/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/admin/labeler/run", run_labeler, methods=["POST"]),
]
