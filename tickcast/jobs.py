"""The job center: long admin operations (train, labeler, backfill…) run in threads with progress.

Every state change is a new row version in table `jobs` (ReplacingMergeTree keyed
by `job_id`, version `updated_at`), so `FINAL` reads show the latest state and a
crashed process leaves its last known state behind. Each change is also an
`events` bus message (`{"kind": "job", …}`), stored in `live_events` so an SSE
client can resume. Progress writes are throttled (default: at most 2 per second
per job); status changes are always written.

A job function is `fn(params, progress) -> result`; `progress(fraction, message)`
may be called from the job's thread as often as it likes. Whatever `fn` raises
ends the job `failed` with the error text — it never reaches the caller.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tickcast import job_messages, metrics
from tickcast.bus import Event, EventPublisher, IdClock

log = logging.getLogger(__name__)

JobFn = Callable[[dict[str, Any], Callable[[float, str], None]], dict[str, Any] | None]
JobListener = Callable[[dict[str, Any]], None]  # called with a job's view after each status change
TRIGGERS = ("manual", "schedule", "drift", "emergency", "api", "cli", "bootstrap")
RETRAIN_KINDS = frozenset({"train", "retrain", "recalibrate"})
ACTIVE = ("queued", "running")


class UnknownJobKind(KeyError):
    """`start` was asked for a kind nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class StartedJob(str):
    """The job id returned by `JobCenter.start` (a plain `str`), plus whether it was already running."""

    already_running: bool

    def __new__(cls, job_id: str, already_running: bool = False) -> StartedJob:
        obj = super().__new__(cls, job_id)
        obj.already_running = already_running
        return obj


@dataclass
class _Job:
    job_id: str
    kind: str
    trigger: str
    params: dict[str, Any]
    created_at: int
    status: str = "queued"
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] | None = None
    error: str = ""
    started_at: int | None = None
    finished_at: int | None = None
    updated_at: int = 0
    last_emit: float = field(default=0.0, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def view(self) -> dict[str, Any]:
        return with_codes(
            {
                "job_id": self.job_id,
                "kind": self.kind,
                "status": self.status,
                "progress": self.progress,
                "message": self.message,
                "params": self.params,
                "result": self.result,
                "error": self.error,
                "trigger": self.trigger,
                "created_at": self.created_at,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "updated_at": self.updated_at,
            }
        )


def with_codes(view: dict[str, Any]) -> dict[str, Any]:
    """Add `message_code`/`message_params` and `error_code`/`error_params` (None when the
    sentence is not in `tickcast.job_messages`), so a page can translate them."""
    for field_name in ("message", "error"):
        found = job_messages.parse(view.get(field_name))
        view[f"{field_name}_code"], view[f"{field_name}_params"] = found if found else (None, None)
    return view


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class JobCenter:
    """Registry of job kinds and a small thread pool that runs them, one active job per kind."""

    def __init__(
        self,
        store: Any,
        *,
        max_workers: int = 1,
        bus: EventPublisher | None = None,
        ids: IdClock | None = None,
        min_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        on_change: JobListener | None = None,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.store = store
        self.bus = bus
        self.ids = ids or IdClock()
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._on_change = on_change
        self._fns: dict[str, JobFn] = {}
        self._jobs: dict[str, _Job] = {}
        self._active: dict[str, str] = {}  # kind -> job_id while queued or running
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")

    # --- registration ------------------------------------------------------------------
    def register(self, kind: str, fn: JobFn) -> None:
        if not kind or not kind.replace("_", "").isalnum():
            raise ValueError(f"job kind must be a short identifier like 'train', got {kind!r}")
        with self._lock:
            self._fns[kind] = fn

    def kinds(self) -> list[str]:
        with self._lock:
            return sorted(self._fns)

    # --- start / inspect ---------------------------------------------------------------
    def start(self, kind: str, params: dict[str, Any] | None = None, trigger: str = "manual") -> StartedJob:
        """Queue a job; returns its id. While a job of this kind is queued or running, returns
        that job's id with `already_running=True` instead of starting a second one."""
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
        with self._lock:
            fn = self._fns.get(kind)
            if fn is None:
                known = ", ".join(sorted(self._fns)) or "none"
                raise UnknownJobKind(f"no job kind {kind!r} is registered in this process (registered: {known})")
            running = self._active.get(kind)
            if running is not None:
                return StartedJob(running, already_running=True)
            now = self._now_ms()
            job = _Job(uuid.uuid4().hex, kind, trigger, dict(params or {}), created_at=now)
            self._jobs[job.job_id] = job
            self._active[kind] = job.job_id
        self._emit(job, force=True)
        self._pool.submit(self._run, job, fn)
        return StartedJob(job.job_id)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's current state (memory for jobs of this process, else the store); None if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.view()
        rows = self.store.named("jobs_get", {"job_id": job_id})
        return _row_view(rows[0]) if rows else None

    def list(self, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first; this process's jobs show their in-memory state (fresher than throttled rows)."""
        rows = self.store.named("jobs_list", {"kind": kind or "", "limit": int(limit)})
        out = []
        with self._lock:
            for row in rows:
                job = self._jobs.get(row["job_id"])
                out.append(job.view() if job is not None else _row_view(row))
        return out

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Block until a job of this process has finished and been recorded; its final state (None on timeout)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"job {job_id!r} was not started by this process")
        return job.view() if job.done.wait(timeout) else None

    def active(self, kind: str) -> str | None:
        with self._lock:
            return self._active.get(kind)

    def mark_interrupted(self) -> int:
        """At start-up: jobs a previous process left queued/running can never finish; mark them failed."""
        rows = self.store.named("jobs_active", {})
        now = self._now_ms()
        stale = []
        for row in rows:
            with self._lock:
                if row["job_id"] in self._jobs:
                    continue
            view = _row_view(row)
            stale.append(
                _store_row(
                    {
                        **view,
                        "status": "failed",
                        "error": "interrupted: the process running it stopped",
                        "finished_at": now,
                        "updated_at": max(now, (view["updated_at"] or 0) + 1),
                    }
                )
            )
        if stale:
            self.store.insert_rows("jobs", stale)
        return len(stale)

    def close(self, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # --- running ----------------------------------------------------------------------------
    def _run(self, job: _Job, fn: JobFn) -> None:
        with self._lock:
            job.status, job.started_at = "running", self._now_ms()
        if job.kind in RETRAIN_KINDS:
            # seed 004's operators grep the process log for "Retraining" / "Retraining failed"
            log.info("Retraining started: job %s (%s, trigger %s)", job.job_id, job.kind, job.trigger)
        self._emit(job, force=True)

        def progress(fraction: float, message: str = "") -> None:
            try:
                value = min(1.0, max(0.0, float(fraction)))
            except (TypeError, ValueError):
                value = job.progress
            with self._lock:
                job.progress, job.message = value, str(message)[:1000]
            self._emit(job)

        outcome: tuple[str, dict[str, Any] | None, str]
        try:
            result = fn(job.params, progress)
            value = result if isinstance(result, dict) else {} if result is None else {"value": result}
            outcome = ("succeeded", value, "")
        except BaseException as exc:  # noqa: BLE001 - a job must never take the process down
            log.exception("job %s (%s) failed", job.job_id, job.kind)
            outcome = ("failed", None, f"{type(exc).__name__}: {exc}")
        with self._lock:  # final state and a free kind in one step, so `get` and `start` agree
            job.status, job.result, job.error = outcome
            if job.status == "succeeded":
                job.progress = 1.0
            job.finished_at = self._now_ms()
            self._active.pop(job.kind, None)
        self._emit(job, force=True)
        metrics.JOBS.labels(job.kind, job.status).inc()
        if job.kind in RETRAIN_KINDS:
            metrics.ML_RETRAINS.labels(job.trigger, job.status).inc()
            if job.status == "succeeded":
                result = job.result or {}
                log.info(
                    "Retraining finished: job %s (%s, trigger %s): version %s, gates %s, promoted %s",
                    job.job_id,
                    job.kind,
                    job.trigger,
                    result.get("version"),
                    "passed" if result.get("passed") else "failed",
                    bool(result.get("promoted")),
                )
            else:
                log.error(
                    "Retraining failed: job %s (%s, trigger %s): %s", job.job_id, job.kind, job.trigger, job.error
                )
        job.done.set()

    def _emit(self, job: _Job, *, force: bool = False) -> None:
        """Write a row version and publish an event; progress-only changes are throttled."""
        now = self._clock()
        with self._lock:
            if not force and now - job.last_emit < self.min_interval_s:
                return
            job.last_emit = now
            job.updated_at = max(self._now_ms(), job.updated_at + 1)
            view = job.view()
        try:
            self.store.insert_rows("jobs", [_store_row(view)])
            event = Event(
                "events",
                self.ids.next(),
                {
                    "kind": "job",
                    **{k: view[k] for k in ("job_id", "status", "progress", "message", "trigger")},
                    "job_kind": view["kind"],
                    "error": view["error"],
                    **{k: view[k] for k in ("message_code", "message_params", "error_code", "error_params")},
                },
                None,
                view["updated_at"],
            )
            self.store.insert_rows("live_events", [event.row()])
            if self.bus is not None:
                self.bus.publish(event)
        except Exception:  # noqa: BLE001 - bookkeeping failures are logged, the job goes on
            log.exception("could not record state of job %s", job.job_id)
        if force and self._on_change is not None:
            try:
                self._on_change(view)
            except Exception:  # noqa: BLE001 - a listener (e.g. retrain_metadata.json) must not stop the job
                log.exception("job listener failed for job %s", job.job_id)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _store_row(view: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: v for k, v in view.items() if not k.endswith(("_code", "_params"))},
        "params": _dumps(view["params"] or {}),
        "result": _dumps(view["result"]) if view["result"] is not None else "",
        "error": view["error"] or "",
        "message": view["message"] or "",
    }


def _row_view(row: dict[str, Any]) -> dict[str, Any]:
    return with_codes(
        {
            "job_id": row["job_id"],
            "kind": row["kind"],
            "status": row["status"],
            "progress": float(row["progress"]),
            "message": row["message"],
            "params": _loads(row["params"]) or {},
            "result": _loads(row["result"]),
            "error": row["error"],
            "trigger": row["trigger"],
            "created_at": row["created_ms"],
            "started_at": row["started_ms"],
            "finished_at": row["finished_ms"],
            "updated_at": row["updated_ms"],
        }
    )


class RetrainRecorder:
    """Keeps seed 004's `metadata/retrain_metadata.json` current: a `JobCenter` listener for the
    retrain jobs (status, trigger, last run, versions) and the scheduler's next run.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> RetrainRecorder(root).schedule({"schedule": "0 0 * * tue", "timezone": "Asia/Seoul",
    ...                                 "next_run": "2026-04-07T00:00:00+09:00"})["next_run"]
    '2026-04-07T00:00:00+09:00'
    """

    def __init__(self, model_dir: str | Any) -> None:
        self.model_dir = model_dir

    def _registry(self) -> Any:
        from models.registry import ModelRegistry

        return ModelRegistry(self.model_dir)

    def __call__(self, view: dict[str, Any]) -> None:
        if view["kind"] not in RETRAIN_KINDS:
            return
        from models.registry import iso_utc

        registry = self._registry()
        state = registry.state()
        result = view.get("result") or {}

        def iso(ms: int | None) -> str | None:
            return None if ms is None else iso_utc(ms / 1000)

        registry.update_retrain_metadata(
            {
                "status": view["status"],
                "trigger": view["trigger"],
                "kind": view["kind"],
                "job_id": view["job_id"],
                "last_run": {
                    "job_id": view["job_id"],
                    "kind": view["kind"],
                    "trigger": view["trigger"],
                    "status": view["status"],
                    "created_at": iso(view.get("created_at")),
                    "started_at": iso(view.get("started_at")),
                    "finished_at": iso(view.get("finished_at")),
                    "error": view.get("error") or None,
                    "version": result.get("version"),
                    "passed": result.get("passed"),
                    "promoted": result.get("promoted"),
                },
                "versions": {
                    "production": state["production"],
                    "previous": state["previous"],
                    "trained": result.get("version"),
                },
            }
        )

    def schedule(self, status: dict[str, Any]) -> dict[str, Any]:
        """Record the scheduler's crontab, time zone and next run (ISO-8601 in that zone)."""
        return dict(
            self._registry().update_retrain_metadata(
                {k: status.get(k) for k in ("schedule", "timezone", "next_run")} | {"scheduler_enabled": True}
            )
        )
