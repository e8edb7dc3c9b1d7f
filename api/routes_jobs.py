"""Job center endpoints (seed 000 "Job Center"): list, inspect, labeler run, backfill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import blocking, get_ctx
from api.errors import ApiError, JSONResponse
from api.routes_admin import start_job
from api.validation import Field, Param, object_schema, parse_query, read_command, spec

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
        description="JSONL/Parquet files or folders to replay through the flow (paths on the API host)",
    ),
)


@spec(
    "Jobs, newest first (progress, status, result or error)",
    params=LIST_PARAMS,
    auth=True,
    tag="jobs",
    responses={200: "jobs"},
)
async def list_jobs(request: Request) -> Response:
    ctx = get_ctx(request)
    q = parse_query(request, LIST_PARAMS)
    jobs = await blocking(ctx.jobs.list, q["kind"], q["limit"])
    return JSONResponse({"count": len(jobs), "jobs": jobs, "kinds": ctx.jobs.kinds()})


@spec("One job by id", params=GET_PARAMS, auth=True, tag="jobs", responses={200: "job", 404: "unknown job"})
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


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # name too long, permission denied...
        return False


def _check_inputs(inputs: list[Any]) -> list[str]:
    if not inputs:
        raise ApiError(422, "'inputs' is empty: name at least one JSONL/Parquet file or folder")
    bad = [x for x in inputs if not isinstance(x, str) or not x or "\x00" in x]
    if bad:
        raise ApiError(422, f"'inputs' must be an array of file or folder paths, got {bad[:5]!r}")
    missing = [x for x in inputs if not _exists(x)]
    if missing:
        raise ApiError(422, f"input(s) not found on the API host: {', '.join(missing[:10])}", missing=missing[:100])
    return [str(Path(x).resolve()) for x in inputs]


@spec(
    "Replay JSONL/Parquet files through the flow (job kind 'backfill')",
    body=object_schema(BACKFILL_FIELDS),
    auth=True,
    tag="jobs",
    responses={202: "job started", 200: "already running", 422: "bad or missing inputs", 503: "no backfill job"},
)
async def backfill(request: Request) -> Response:
    ctx = get_ctx(request)
    body = await read_command(request, BACKFILL_FIELDS, 1_048_576)
    inputs = await blocking(_check_inputs, body["inputs"])
    return await start_job(ctx, "backfill", {"inputs": inputs}, "api")


routes = [
    Route("/admin/jobs", list_jobs, methods=["GET"]),
    Route("/admin/jobs/backfill", backfill, methods=["POST"]),
    Route("/admin/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/admin/labeler/run", run_labeler, methods=["POST"]),
]
