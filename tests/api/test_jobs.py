"""Job center: progress, failure, one running job per kind, rows, events, metrics."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tickcast import metrics
from tickcast.bus import Event, IdClock
from tickcast.jobs import JobCenter, UnknownJobKind


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_progress_and_success(store) -> None:
    bus = RecordingBus()
    jobs = JobCenter(store, bus=bus, ids=IdClock(), min_interval_s=0.0)
    steps = threading.Event()

    def work(params: dict[str, Any], progress: Any) -> dict[str, Any]:
        for i in range(1, 5):
            progress(i / 4, f"step {i}")
        progress(7, "clamped")  # out of range: clamped to 1
        steps.set()
        return {"rows": params["n"] * 2}

    jobs.register("backfill", work)
    job_id = jobs.start("backfill", {"n": 21}, trigger="api")
    assert jobs.wait(job_id, 5)["status"] == "succeeded"
    job = jobs.get(job_id)
    assert job["result"] == {"rows": 42} and job["progress"] == 1.0 and job["trigger"] == "api"
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    # The store holds the final version (FINAL picks the highest updated_at).
    row = store.rows(
        "SELECT status, progress, result, params FROM {db}.jobs FINAL WHERE job_id = {j:String}", {"j": job_id}
    )[0]
    assert row["status"] == "succeeded" and row["progress"] == 1.0
    assert json.loads(row["result"]) == {"rows": 42} and json.loads(row["params"]) == {"n": 21}
    # Every change is an event: queued, running, 5 progress updates, succeeded; ids strictly increasing,
    # and each stored for SSE resume.
    mine = [e for e in bus.events if e.data["job_id"] == job_id]
    assert [e.data["status"] for e in mine] == ["queued"] + ["running"] * 6 + ["succeeded"]
    assert [e.data["progress"] for e in mine if e.data["status"] == "running"] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert mine[4].data["message"] == "step 3"
    assert all(a.id < b.id for a, b in zip(mine, mine[1:], strict=False))
    assert all(e.stream == "events" and e.data["kind"] == "job" for e in mine)
    stored = store.rows("SELECT id FROM {db}.live_events FINAL WHERE stream = 'events' ORDER BY id")
    assert [r["id"] for r in stored] == [e.id for e in mine]
    jobs.close()


def test_failure_is_recorded_not_raised(store) -> None:
    jobs = JobCenter(store)

    def boom(params: dict[str, Any], progress: Any) -> dict[str, Any]:
        progress(0.3, "about to fail")
        raise RuntimeError("no labeled rows in the window")

    jobs.register("train", boom)
    before = metrics.ML_RETRAINS.labels("emergency", "failed")._value.get()
    job_id = jobs.start("train", {}, trigger="emergency")
    assert jobs.wait(job_id, 5)["status"] == "failed"
    job = jobs.get(job_id)
    assert job["error"] == "RuntimeError: no labeled rows in the window"
    assert job["result"] is None
    assert metrics.ML_RETRAINS.labels("emergency", "failed")._value.get() == before + 1
    # The kind is free again: a new start makes a new job.
    jobs.register("train", lambda p, progress: {"ok": True})
    again = jobs.start("train", {}, trigger="manual")
    assert again != job_id and not again.already_running
    assert jobs.wait(again, 5)["status"] == "succeeded"
    jobs.close()


def test_one_running_per_kind(store) -> None:
    jobs = JobCenter(store, max_workers=2)
    gate = threading.Event()
    jobs.register("train", lambda p, progress: gate.wait(5) and {"done": True})
    jobs.register("labeler", lambda p, progress: {"labeled": 3})
    first = jobs.start("train", {"a": 1})
    second = jobs.start("train", {"a": 2})
    assert second == first and second.already_running and not first.already_running
    other = jobs.start("labeler", {}, trigger="api")  # other kinds are not blocked
    wait_for(lambda: jobs.get(other)["status"] == "succeeded")
    assert jobs.get(first)["status"] in ("queued", "running")
    gate.set()
    wait_for(lambda: jobs.get(first)["status"] == "succeeded")
    assert jobs.get(first)["params"] == {"a": 1}
    listed = jobs.list(kind="train")
    assert [j["job_id"] for j in listed] == [first]
    assert {j["kind"] for j in jobs.list()} == {"train", "labeler"}
    jobs.close()


def test_progress_is_throttled(store) -> None:
    bus = RecordingBus()
    jobs = JobCenter(store, bus=bus, min_interval_s=10.0)

    def chatty(params: dict[str, Any], progress: Any) -> dict[str, Any]:
        for i in range(200):
            progress(i / 200, "")
        return {}

    jobs.register("backfill", chatty)
    job_id = jobs.start("backfill", {})
    jobs.wait(job_id, 5)
    # queued + running + succeeded are forced; the 200 progress calls fall inside the 10 s interval.
    assert [e.data["status"] for e in bus.events] == ["queued", "running", "succeeded"]
    jobs.close()


def test_unknown_kind_and_bad_trigger(store) -> None:
    jobs = JobCenter(store)
    with pytest.raises(UnknownJobKind, match="no job kind 'train'"):
        jobs.start("train", {})
    jobs.register("train", lambda p, progress: {})
    with pytest.raises(ValueError, match="trigger"):
        jobs.start("train", {}, trigger="cron")
    assert jobs.get("nope") is None
    jobs.close()


def test_mark_interrupted(store) -> None:
    now = int(time.time() * 1000)
    store.insert_rows(
        "jobs",
        [
            {
                "job_id": "old",
                "kind": "train",
                "status": "running",
                "progress": 0.5,
                "message": "",
                "params": "{}",
                "result": "",
                "error": "",
                "trigger": "schedule",
                "created_at": now - 1000,
                "started_at": now - 900,
                "finished_at": None,
                "updated_at": now - 800,
            }
        ],
    )
    jobs = JobCenter(store)
    assert jobs.mark_interrupted() == 1
    job = jobs.get("old")
    assert job["status"] == "failed" and "interrupted" in job["error"]
    assert jobs.mark_interrupted() == 0
    jobs.close()
