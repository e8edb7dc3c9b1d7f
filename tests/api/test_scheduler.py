"""Retrain schedule: next firing instants, checked against hand-written datetimes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from tickcast.jobs import JobCenter
from tickcast.scheduler import RetrainScheduler, next_run_after

KST = ZoneInfo("Asia/Seoul")
CRON = "0 0 * * tue"


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # Monday 23:59 KST -> Tuesday 00:00 KST, one minute later.
        (datetime(2026, 3, 30, 23, 59, tzinfo=KST), datetime(2026, 3, 31, 0, 0, tzinfo=KST)),
        # Just after the firing -> the next Tuesday.
        (datetime(2026, 3, 31, 0, 0, 1, tzinfo=KST), datetime(2026, 4, 7, 0, 0, tzinfo=KST)),
        # Exactly at the firing: "after" is strict.
        (datetime(2026, 3, 31, 0, 0, 0, tzinfo=KST), datetime(2026, 4, 7, 0, 0, tzinfo=KST)),
        # Across a year boundary: Wed 2025-12-31 -> Tue 2026-01-06.
        (datetime(2025, 12, 31, 12, 0, tzinfo=KST), datetime(2026, 1, 6, 0, 0, tzinfo=KST)),
        # UTC inputs: Tuesday 00:00 KST is Monday 15:00 UTC.
        (datetime(2026, 3, 30, 14, 59, tzinfo=UTC), datetime(2026, 3, 30, 15, 0, tzinfo=UTC)),
        (datetime(2026, 3, 30, 15, 0, 1, tzinfo=UTC), datetime(2026, 4, 6, 15, 0, tzinfo=UTC)),
        # Tuesday 10:00 UTC is already Tuesday 19:00 KST: next is the following Tuesday (Mon 15:00 UTC).
        (datetime(2026, 3, 31, 10, 0, tzinfo=UTC), datetime(2026, 4, 6, 15, 0, tzinfo=UTC)),
    ],
)
def test_next_run_after(instant: datetime, expected: datetime) -> None:
    got = next_run_after(instant, CRON, "Asia/Seoul")
    assert got == expected
    assert got.utcoffset() == timedelta(hours=9)  # reported in the schedule's zone
    assert got.weekday() == 1 and (got.hour, got.minute, got.second) == (0, 0, 0)


def test_next_run_other_schedule_and_zone() -> None:
    # Every day at 03:30 UTC.
    assert next_run_after(datetime(2026, 2, 28, 3, 30, tzinfo=UTC), "30 3 * * *", "UTC") == datetime(
        2026, 3, 1, 3, 30, tzinfo=UTC
    )


def test_naive_instant_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run_after(datetime(2026, 3, 30, 23, 59), CRON, "Asia/Seoul")


def _settings(**kw: str) -> SimpleNamespace:
    return SimpleNamespace(RETRAIN_SCHEDULE=kw.get("cron", CRON), RETRAIN_TIMEZONE=kw.get("tz", "Asia/Seoul"))


def test_scheduler_status_and_fire(store) -> None:
    jobs = JobCenter(store)
    release = threading.Event()
    jobs.register("train", lambda params, progress: release.wait(5) and {"ok": True})
    sched = RetrainScheduler(jobs, _settings())
    now = datetime(2026, 3, 30, 23, 59, tzinfo=KST)
    status = sched.status(now)
    assert status == {
        "enabled": False,
        "schedule": CRON,
        "timezone": "Asia/Seoul",
        "next_run": "2026-03-31T00:00:00+09:00",
        "last_run": None,
    }
    first = sched.fire()
    second = sched.fire()  # one running per kind: the same job comes back
    assert first is not None and second == first
    release.set()
    deadline = datetime.now() + timedelta(seconds=5)
    while jobs.get(first)["status"] != "succeeded" and datetime.now() < deadline:
        threading.Event().wait(0.02)
    last = sched.status(now)["last_run"]
    assert last["job_id"] == first and last["status"] == "succeeded"
    assert last["started_at"].endswith("+09:00") and last["finished_at"] is not None
    jobs.close()


def test_scheduler_start_stop(store) -> None:
    jobs = JobCenter(store)
    sched = RetrainScheduler(jobs, _settings(cron="0 0 * * tue"))
    sched.start()
    try:
        status = sched.status()
        assert status["enabled"] is True
        nxt = datetime.fromisoformat(status["next_run"])
        # The next Tuesday 00:00 KST after now, at most a week away.
        assert nxt.weekday() == 1 and (nxt.hour, nxt.minute) == (0, 0)
        assert timedelta(0) < nxt - datetime.now(KST) <= timedelta(days=7)
    finally:
        sched.stop()
    assert sched.status()["enabled"] is False
    jobs.close()


def test_bad_crontab_refused(store) -> None:
    with pytest.raises(ValueError):
        RetrainScheduler(JobCenter(store), _settings(cron="not a cron"))


def test_app_lifespan_starts_and_stops_the_scheduler(api_store, tmp_path) -> None:
    import httpx

    from api.context import AppContext
    from tests.api.conftest import AUTH, make_settings, start_server
    from tickcast.bus import LocalBus

    holder: dict[str, RetrainScheduler] = {}

    def factory(box):  # type: ignore[no-untyped-def]
        jobs = JobCenter(api_store)
        settings = make_settings()
        holder["s"] = RetrainScheduler(jobs, settings)
        return AppContext(
            settings=settings,
            store=api_store,
            bus=LocalBus(),
            ingest=box.ingested.extend,
            jobs=jobs,
            registry_root=tmp_path,
            scheduler=holder["s"],
        )

    servers = start_server(factory)
    box = next(servers)
    try:
        body = httpx.get(box.base + "/admin/scheduler-status", headers=AUTH).json()
        assert body["enabled"] is True and body["schedule"] == CRON
        assert datetime.fromisoformat(body["next_run"]).weekday() == 1
    finally:
        next(servers, None)  # runs the shutdown
    assert holder["s"].running is False


def test_two_replicas_sharing_the_jobs_table_start_one_scheduled_retrain(store) -> None:
    """Each API replica runs a scheduler; the second one to fire finds the first one's job."""
    release = threading.Event()
    replica_a, replica_b = JobCenter(store), JobCenter(store)
    for jobs in (replica_a, replica_b):
        jobs.register("train", lambda params, progress: release.wait(5) and {"ok": True})
    first = RetrainScheduler(replica_a, _settings()).fire()
    second = RetrainScheduler(replica_b, _settings()).fire()
    assert first is not None and second == first
    assert len(replica_b.list(kind="train")) == 1
    release.set()
    replica_a.close()
    replica_b.close()
