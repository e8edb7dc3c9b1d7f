"""Scheduled retraining (seed 004: every Tuesday 00:00 KST) on APScheduler 3.x.

The schedule is a 5-field crontab (`RETRAIN_SCHEDULE`, default `0 0 * * tue`)
read in `RETRAIN_TIMEZONE` (default Asia/Seoul). A firing starts a job of kind
`train` with trigger `schedule` in the job center; if one is already running the
job center returns it instead of starting a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from tickcast.jobs import JobCenter, UnknownJobKind

log = logging.getLogger(__name__)

_JOB_ID = "tickcast-retrain"


def _trigger(crontab: str, tz: str) -> CronTrigger:
    return CronTrigger.from_crontab(crontab, timezone=ZoneInfo(tz))


def next_run_after(instant: datetime, crontab: str, tz: str) -> datetime:
    """The first firing strictly after `instant` (timezone-aware), in zone `tz`.

    >>> from datetime import timezone
    >>> next_run_after(datetime(2026, 3, 31, 0, 0, 1, tzinfo=ZoneInfo("Asia/Seoul")), "0 0 * * tue", "Asia/Seoul")
    datetime.datetime(2026, 4, 7, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='Asia/Seoul'))
    """
    if instant.tzinfo is None:
        raise ValueError(f"instant must be timezone-aware (e.g. datetime.now(timezone.utc)), got naive {instant}")
    # APScheduler returns a firing *at or after* `now`; one microsecond later makes it strictly after.
    nxt = _trigger(crontab, tz).get_next_fire_time(None, instant + timedelta(microseconds=1))
    if nxt is None:
        raise ValueError(f"crontab {crontab!r} never fires after {instant.isoformat()}")
    return nxt


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _ms_iso(ms: int | None, tz: ZoneInfo) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz).isoformat()


class RetrainScheduler:
    """Fires `job_center.start(kind, {}, trigger="schedule")` on the crontab."""

    def __init__(
        self,
        job_center: JobCenter,
        settings: Any,
        *,
        kind: str = "train",
        on_schedule: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.jobs = job_center
        self.kind = kind
        self._on_schedule = on_schedule  # e.g. RetrainRecorder.schedule: next run into retrain_metadata.json
        self.crontab: str = settings.RETRAIN_SCHEDULE
        self.tz_name: str = settings.RETRAIN_TIMEZONE
        self.tz = ZoneInfo(self.tz_name)
        self._trigger = _trigger(self.crontab, self.tz_name)  # validates the crontab now, not at first firing
        self._scheduler: BackgroundScheduler | None = None

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def start(self) -> None:
        if self.running:
            return
        scheduler = BackgroundScheduler(timezone=self.tz)
        scheduler.add_job(
            self.fire,
            self._trigger,
            id=_JOB_ID,
            coalesce=True,  # missed firings (process asleep) collapse into one
            max_instances=1,
            misfire_grace_time=3600,
        )
        scheduler.start()
        self._scheduler = scheduler
        log.info("retrain scheduled '%s' (%s); next run %s", self.crontab, self.tz_name, self.next_run())
        self._record_schedule()

    def _record_schedule(self) -> None:
        if self._on_schedule is None:
            return
        try:
            self._on_schedule({"schedule": self.crontab, "timezone": self.tz_name, "next_run": _iso(self.next_run())})
        except Exception:  # noqa: BLE001 - the metadata file is for operators; the schedule goes on
            log.exception("could not record the next scheduled retrain")

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def fire(self) -> str | None:
        """One scheduled retrain (also what the scheduler calls).

        Every API replica runs a scheduler; the `jobs` table they share decides: a replica
        that finds a scheduled job started in the last 10 minutes leaves it at that.
        """
        try:
            recent = self._recent_scheduled_job(window_s=600)
            if recent is not None:
                log.info("scheduled retrain already started elsewhere: job %s", recent)
                return recent
            try:
                job_id = self.jobs.start(self.kind, {}, trigger="schedule")
            except UnknownJobKind:
                log.error("Retraining failed: scheduled retrain skipped, no %r job is registered", self.kind)
                return None
            log.info(
                "Retraining scheduled: job %s%s",
                job_id,
                " (a train job was already running)" if job_id.already_running else "",
            )
            return str(job_id)
        finally:
            self._record_schedule()  # the next run moved on

    def _recent_scheduled_job(self, *, window_s: int) -> str | None:
        now_ms = int(datetime.now(self.tz).timestamp() * 1000)
        try:
            for job in self.jobs.list(kind=self.kind, limit=20):
                created = job.get("created_at") or 0
                if job["trigger"] == "schedule" and now_ms - int(created) < window_s * 1000:
                    return str(job["job_id"])
        except Exception:  # noqa: BLE001 - the store being down must not stop the retrain
            log.exception("could not check for a scheduled retrain started by another replica")
        return None

    def next_run(self, now: datetime | None = None) -> datetime:
        if self._scheduler is not None and now is None:
            job = self._scheduler.get_job(_JOB_ID)
            if job is not None and job.next_run_time is not None:
                return job.next_run_time
        return next_run_after(now or datetime.now(self.tz), self.crontab, self.tz_name)

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        """`{enabled, schedule, timezone, next_run, last_run}`; last_run is the newest scheduled job."""
        last = None
        try:
            for job in self.jobs.list(kind=self.kind, limit=50):
                if job["trigger"] == "schedule":
                    last = {
                        "job_id": job["job_id"],
                        "status": job["status"],
                        "started_at": _ms_iso(job["started_at"], self.tz),
                        "finished_at": _ms_iso(job["finished_at"], self.tz),
                    }
                    break
        except Exception:  # noqa: BLE001 - status must answer even if the store is down
            log.exception("could not read the last scheduled retrain")
        return {
            "enabled": self.running,
            "schedule": self.crontab,
            "timezone": self.tz_name,
            "next_run": _iso(self.next_run(now)),
            "last_run": last,
        }
