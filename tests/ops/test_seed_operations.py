"""Seed 004's operations as written (issue 17): the log lines operators grep for, and
`metadata/retrain_metadata.json` kept current by the retrain jobs and the scheduler; job
sentences carry codes the dashboard translates."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from models.registry import ModelRegistry
from models.runtime import Predictor
from tickcast.job_messages import CATALOGUE, parse
from tickcast.jobs import JobCenter, RetrainRecorder, with_codes
from tickcast.scheduler import RetrainScheduler


def _metadata(root: Path) -> dict[str, Any]:
    return json.loads((root / "metadata" / "retrain_metadata.json").read_text())


def test_retrain_log_lines_and_metadata_follow_each_job(
    store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tickcast.jobs")
    jobs = JobCenter(store, on_change=RetrainRecorder(tmp_path))

    def failing(params: dict[str, Any], progress: Any) -> dict[str, Any]:
        progress(0.02, "reading features ⋈ labels from ClickHouse")
        assert _metadata(tmp_path)["status"] == "running"  # kept current while it runs
        raise RuntimeError("not enough data (데이터 부족): 12 labeled rows, need at least MIN_TRAIN_SAMPLES=500")

    jobs.register("train", failing)
    job_id = jobs.start("train", {}, trigger="manual")
    assert jobs.wait(job_id, 10)["status"] == "failed"
    meta = _metadata(tmp_path)
    assert meta["status"] == "failed" and meta["trigger"] == "manual" and meta["job_id"] == job_id
    assert "12 labeled rows" in meta["last_run"]["error"] and meta["last_run"]["finished_at"].endswith("Z")
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("Retraining started: job " + job_id) for line in lines)
    failed = [r for r in caplog.records if r.getMessage().startswith("Retraining failed")]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR and "12 labeled rows" in failed[0].getMessage()

    jobs.register("train", lambda params, progress: {"version": "m-new", "passed": True, "promoted": False})
    ok = jobs.start("train", {}, trigger="emergency")
    assert jobs.wait(ok, 10)["status"] == "succeeded"
    meta = _metadata(tmp_path)
    assert meta["status"] == "succeeded" and meta["trigger"] == "emergency" and meta["last_run"]["error"] is None
    assert meta["versions"] == {"production": None, "previous": None, "trained": "m-new"}
    assert any(r.getMessage().startswith(f"Retraining finished: job {ok}") for r in caplog.records)

    jobs.register("labeler", lambda params, progress: {"labeled": 0})
    other = jobs.start("labeler", {}, trigger="api")
    jobs.wait(other, 10)
    assert _metadata(tmp_path)["job_id"] == ok  # only retrain jobs touch the retrain file
    jobs.close()
    assert ModelRegistry(tmp_path).list() == []  # the file is not taken for a model version


def test_promotion_and_rollback_keep_the_versions_current(tmp_path: Path) -> None:
    from tests.api.test_admin import fake_model

    fake_model(tmp_path, "m-a", created_ts=1.0)
    fake_model(tmp_path, "m-b", created_ts=2.0)
    registry = ModelRegistry(tmp_path)
    RetrainRecorder(tmp_path)({"kind": "train", "status": "succeeded", "trigger": "manual", "job_id": "j1",
                               "result": {"version": "m-b"}})  # fmt: skip
    registry.promote("m-a", cooldown_s=0, force=True)
    registry.promote("m-b", cooldown_s=0, force=True)
    assert _metadata(tmp_path)["versions"] == {"production": "m-b", "previous": "m-a", "trained": "m-b"}
    registry.rollback()
    assert _metadata(tmp_path)["versions"] == {"production": "m-a", "previous": None, "trained": "m-b"}


def test_scheduler_records_its_next_run_in_the_schedule_zone(store, tmp_path: Path) -> None:
    jobs = JobCenter(store)
    settings = SimpleNamespace(RETRAIN_SCHEDULE="0 0 * * tue", RETRAIN_TIMEZONE="Asia/Seoul")
    scheduler = RetrainScheduler(jobs, settings, on_schedule=RetrainRecorder(tmp_path).schedule)
    scheduler.start()
    try:
        meta = _metadata(tmp_path)
        assert meta["schedule"] == "0 0 * * tue" and meta["timezone"] == "Asia/Seoul"
        assert meta["next_run"].endswith("T00:00:00+09:00") and meta["next_run"] == scheduler.status()["next_run"]
    finally:
        scheduler.stop()
        jobs.close()


def test_fallback_log_line_is_the_seed_phrase(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="models.runtime")
    predictor = Predictor(tmp_path)  # an empty registry: no model
    _, version, reason = predictor.predict(["XRPUSDT"], np.zeros((1, 0)))
    assert (version, reason) == ("baseline", "no_model")
    lines = [r.getMessage() for r in caplog.records if "Falling back to statistical mode" in r.getMessage()]
    assert lines == ["Falling back to statistical mode (the baseline's rolling base rate): no_model"]
    predictor.predict(["XRPUSDT"], np.zeros((1, 0)))  # still falling back: no second line
    assert sum("Falling back" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("text", "code", "params"),
    [
        (
            "registered m20251121T101500Z-ab12cd (promoted)",
            "train.registered_promoted",
            {"version": "m20251121T101500Z-ab12cd"},
        ),
        ("registered m1", "train.registered", {"version": "m1"}),
        ("1000 labels to write", "labeler.writing", {"count": "1000"}),
        ("parity check", "stage.parity_check", {}),
        ("interrupted: the process running it stopped", "job.interrupted", {}),
        (
            "RuntimeError: not enough data (데이터 부족): 12 labeled rows, need at least MIN_TRAIN_SAMPLES=500",
            "data.not_enough",
            {"rows": "12", "minimum": "500"},
        ),
    ],
)
def test_job_sentences_become_codes(text: str, code: str, params: dict[str, str]) -> None:
    assert parse(text) == (code, params)


def test_every_code_is_translated_in_both_dictionaries() -> None:
    static = Path(__file__).resolve().parents[2] / "api" / "static"
    for lang in ("en", "ko"):
        text = (static / f"i18n_{lang}.js").read_text()
        missing = [code for code in CATALOGUE if f'"jobmsg.{code}"' not in text]
        assert missing == [], f"i18n_{lang}.js lacks {missing}"
    view = with_codes({"message": "something not in the catalogue", "error": ""})
    assert view["message_code"] is None and view["error_code"] is None  # the English text stays
