"""Admin endpoints: confirmation of dangerous operations, registry effects, jobs, scheduler."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import AUTH


def fake_model(
    root: Path, version: str, *, status: str = "candidate", created_ts: float, ece: float = 0.03, backup: bool = False
) -> None:
    """A registry entry written by hand (registry layout of models/registry.py), no training needed."""
    onnx = f"onnx bytes of {version}".encode()
    meta = {
        "version": version,
        "status": status,
        "created_ts": created_ts,
        "created_at": "2025-11-21T00:00:00Z",
        "sha256": hashlib.sha256(onnx).hexdigest(),
        "ece_prod": ece,
        "brier_prod": 0.2,
        "pr_auc_prod": 0.6,
        "roc_auc": 0.7,
        "metrics": {"n": 100, "bins": [{"lo": 0.0, "hi": 1.0, "n": 100}]},
        "gates": {"passed": status != "rejected", "failures": ["roc_auc 0.55 < 0.65"] if status == "rejected" else []},
    }
    for sub in ("trained", "metadata", "backups"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "trained" / f"{version}.onnx").write_bytes(onnx)
    (root / "metadata" / f"{version}.json").write_text(json.dumps(meta))
    if backup:
        shutil.copy(root / "trained" / f"{version}.onnx", root / "backups" / f"{version}.onnx")
        shutil.copy(root / "metadata" / f"{version}.json", root / "backups" / f"{version}.json")


@pytest.fixture(scope="module")
def models(server) -> Path:
    root = server.ctx.registry_root
    fake_model(root, "m-a", created_ts=1.0, backup=True)
    fake_model(root, "m-b", created_ts=2.0, ece=0.04)
    fake_model(root, "m-bad", created_ts=3.0, status="rejected")
    return root


def production(root: Path) -> str | None:
    path = root / "metadata" / "registry.json"
    return json.loads(path.read_text())["production"] if path.exists() else None


def test_models_list(server, models) -> None:
    with server.client() as c:
        body = c.get("/api/models").json()
    assert [m["version"] for m in body["models"]] == ["m-a", "m-b", "m-bad"]
    assert body["models"][0]["ece_prod"] == 0.03


def test_promote_needs_confirm_then_promotes(server, models) -> None:
    with server.client() as c:
        r = c.post("/admin/models/promote", json={"version": "m-a"}, headers=AUTH)
        assert r.status_code == 409
        body = r.json()
        assert body["plan"]["current_production"] is None and body["plan"]["new_production"] == "m-a"
        assert '"confirm": true' in body["error"] and body["confirm_with"] == {"version": "m-a", "confirm": True}
        assert production(models) is None  # nothing happened
        r = c.post("/admin/models/promote", json={"version": "m-a", "confirm": True}, headers=AUTH)
        assert r.status_code == 200 and r.json()["promoted"] == "m-a" and production(models) == "m-a"

        # A second promotion inside PROMOTION_COOLDOWN_SECONDS is refused unless forced.
        r = c.post("/admin/models/promote", json={"version": "m-b"}, headers=AUTH)
        assert r.status_code == 409 and r.json()["plan"]["current_production"] == "m-a"
        r = c.post("/admin/models/promote", json={"version": "m-b", "confirm": True}, headers=AUTH)
        assert r.status_code == 409 and r.json()["reason"] == "cooldown" and r.json()["code"] == "promotion.cooldown"
        # one way to override, said once, in the API's own terms (not the Python keyword)
        assert (
            r.json()["error"].endswith('resend with "force": true to override it')
            and "force=True" not in r.json()["error"]
        )
        r = c.post("/admin/models/promote", json={"version": "m-b", "confirm": True, "force": True}, headers=AUTH)
        assert r.status_code == 200 and production(models) == "m-b"

        status = c.get("/api/models/promotion-status").json()
        assert status["production"] == "m-b" and status["in_cooldown"] is True and status["cooldown_s"] == 3600

        # Rollback: 409 describing m-b -> m-a, then done.
        r = c.post("/admin/models/rollback", json={}, headers=AUTH)
        assert r.status_code == 409 and r.json()["plan"] == {
            "action": "rollback",
            "current_production": "m-b",
            "new_production": "m-a",
            "code": "plan.rollback",
            "params": {"current": "m-b", "new": "m-a"},
            "description": r.json()["plan"]["description"],
        }
        assert production(models) == "m-b"
        r = c.post("/admin/models/rollback", json={"confirm": True}, headers=AUTH)
        assert r.status_code == 200 and r.json()["production"] == "m-a" and production(models) == "m-a"


def test_promote_errors(server, models) -> None:
    with server.client() as c:
        r = c.post("/admin/models/promote", json={"version": "m-zzz", "confirm": True}, headers=AUTH)
        assert r.status_code == 404 and "unknown model version" in r.json()["error"]
        r = c.post("/admin/models/promote", json={"version": "m-bad", "confirm": True}, headers=AUTH)
        assert r.status_code == 409 and r.json()["reason"] == "rejected"
        r = c.post("/admin/models/promote", json={"confirm": True}, headers=AUTH)
        assert r.status_code == 422 and "missing field 'version'" in r.json()["error"]
        r = c.post("/admin/models/promote", json={"version": 5, "confirm": True}, headers=AUTH)
        assert r.status_code == 422 and "'version' must be a string" in r.json()["error"]
        r = c.post("/admin/models/promote", json={"version": "m-a", "confirm": "yes"}, headers=AUTH)
        assert r.status_code == 422 and "'confirm' must be a boolean" in r.json()["error"]
        r = c.post("/admin/models/promote", json={"version": "m-a", "confirm": True})
        assert r.status_code == 401
        r = c.post("/admin/models/promote", json={"version": "m-a"}, headers={"X-API-Key": "nope"})
        assert r.status_code == 403


def test_restore(server, models) -> None:
    onnx = models / "trained" / "m-a.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(b"corrupted")
    with server.client() as c:
        r = c.post("/admin/models/restore", json={"version": "m-a"}, headers=AUTH)
        assert r.status_code == 409 and r.json()["plan"]["action"] == "restore"
        assert onnx.read_bytes() == b"corrupted"
        r = c.post("/admin/models/restore", json={"version": "m-a", "confirm": True}, headers=AUTH)
        assert r.status_code == 200 and onnx.read_bytes() == good
        r = c.post("/admin/models/restore", json={"version": "m-b", "confirm": True}, headers=AUTH)
        assert r.status_code == 404 and "no backup of 'm-b'" in r.json()["error"]


def wait_job(c: Any, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/admin/jobs/{job_id}", headers=AUTH).json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def test_retrain_endpoints_start_train_jobs(server) -> None:
    jobs = server.ctx.jobs
    gate = threading.Event()
    seen: list[dict[str, Any]] = []

    def train(params: dict[str, Any], progress: Any) -> dict[str, Any]:
        seen.append(params)
        progress(0.5, "fitting")
        gate.wait(5)
        return {"version": "m-new"}

    with server.client() as c:
        r = c.post("/admin/manual-retrain", headers=AUTH)
        assert r.status_code == 503 and "no job kind 'train'" in r.json()["error"]
        jobs.register("train", train)
        r = c.post("/admin/manual-retrain", json={"reason": "data fixed"}, headers=AUTH)
        assert r.status_code == 202
        first = r.json()
        assert first["kind"] == "train" and first["trigger"] == "manual" and not first["already_running"]
        # An emergency retrain while the manual one runs starts nothing and says so (issue 17):
        # 409 naming the running job and its own trigger, and the request is counted.
        before = {o: _emergency_requests("api", o) for o in ("started", "already_running")}
        r = c.post("/admin/emergency-retrain", headers=AUTH)
        body = r.json()
        assert r.status_code == 409 and body["job_id"] == first["job_id"] and body["outcome"] == "already_running"
        assert body["running_job"]["trigger"] == "manual" and first["job_id"] in body["error"]
        assert body["code"] == "retrain.busy" and body["params"]["trigger"] == "manual"
        assert _emergency_requests("api", "already_running") == before["already_running"] + 1
        # a manual retrain meanwhile answers with the running job and its real trigger
        r = c.post("/admin/manual-retrain", headers=AUTH)
        assert r.status_code == 200 and r.json()["already_running"] and r.json()["trigger"] == "manual"
        assert r.json()["requested_trigger"] == "manual" and r.json()["running_job"]["job_id"] == first["job_id"]
        gate.set()
        job = wait_job(c, first["job_id"])
        assert job["status"] == "succeeded" and job["result"] == {"version": "m-new"}
        assert job["params"] == {"reason": "data fixed"} and seen == [{"reason": "data fixed"}]
        r = c.post("/admin/emergency-retrain", headers=AUTH)
        assert r.status_code == 202 and r.json()["trigger"] == "emergency" and r.json()["outcome"] == "started"
        assert _emergency_requests("api", "started") == before["started"] + 1
        job = wait_job(c, r.json()["job_id"])
        assert job["trigger"] == "emergency" and job["params"]["emergency"] is True
        listed = c.get("/admin/jobs", params={"kind": "train"}, headers=AUTH).json()["jobs"]
        assert [j["trigger"] for j in listed] == ["emergency", "manual"]
        text = c.get("/metrics").text
        assert 'ml_retrains_total{status="succeeded",trigger="manual"}' in text
        assert 'ml_emergency_retrain_requests_total{outcome="already_running",source="api"}' in text


def _emergency_requests(source: str, outcome: str) -> float:
    from tickcast import metrics

    return float(metrics.EMERGENCY_RETRAIN_REQUESTS.labels(source, outcome)._value.get())  # noqa: SLF001


def test_labeler_run_defaults_and_overrides(server) -> None:
    server.ctx.jobs.register("labeler", lambda params, progress: {"labeled": params["limit"]})
    with server.client() as c:
        r = c.post("/admin/labeler/run", headers=AUTH)
        assert r.status_code == 202
        job = wait_job(c, r.json()["job_id"])
        # seed defaults: min_age=120 s, limit=1000, force=true
        assert job["params"] == {"min_age": 120, "limit": 1000, "force": True} and job["result"] == {"labeled": 1000}
        r = c.post("/admin/labeler/run", json={"min_age": 0, "limit": 5, "force": False}, headers=AUTH)
        assert wait_job(c, r.json()["job_id"])["params"] == {"min_age": 0, "limit": 5, "force": False}
        for bad, fragment in [
            ({"limit": 0}, "'limit' must be in [1, 1000000]"),
            ({"min_age": -1}, "'min_age'"),
            ({"force": "yes"}, "'force' must be a boolean"),
            ([1], "must be a JSON object"),
        ]:
            r = c.post("/admin/labeler/run", json=bad, headers=AUTH)
            assert r.status_code == 422 and fragment in r.json()["error"], (bad, r.text)


def test_backfill_job(server, tmp_path: Path) -> None:
    replayed: list[list[str]] = []
    server.ctx.jobs.register("backfill", lambda params, progress: replayed.append(params["inputs"]) or {"ok": 1})
    data = tmp_path / "ticks.jsonl"
    data.write_text("{}\n")
    with server.client() as c:
        r = c.post("/admin/jobs/backfill", json={"inputs": [str(data)]}, headers=AUTH)
        assert r.status_code == 202 and wait_job(c, r.json()["job_id"])["status"] == "succeeded"
        assert replayed == [[str(data.resolve())]]
        r = c.post("/admin/jobs/backfill", json={"inputs": [str(tmp_path / "missing.jsonl")]}, headers=AUTH)
        assert r.status_code == 422 and "not found" in r.json()["error"]
        r = c.post("/admin/jobs/backfill", json={"inputs": []}, headers=AUTH)
        assert r.status_code == 422 and "at least 1 item" in r.json()["error"]
        r = c.post("/admin/jobs/backfill", json={}, headers=AUTH)
        assert r.status_code == 422 and "missing field 'inputs'" in r.json()["error"]


def test_jobs_lookup_errors(server) -> None:
    with server.client() as c:
        r = c.get("/admin/jobs/0123456789abcdef", headers=AUTH)
        assert r.status_code == 404 and "no job" in r.json()["error"]
        assert c.get("/admin/jobs/0123", headers={}).status_code == 401
        assert c.get("/admin/jobs", params={"limit": 0}, headers=AUTH).status_code == 400
        assert c.get("/admin/jobs", params={"kind": "bad kind"}, headers=AUTH).status_code == 400


def test_scheduler_status_without_scheduler(server) -> None:
    with server.client() as c:
        assert c.get("/admin/scheduler-status").status_code == 401
        body = c.get("/admin/scheduler-status", headers=AUTH).json()
    assert body["enabled"] is False and body["schedule"] == "0 0 * * tue" and body["timezone"] == "Asia/Seoul"
    assert body["next_run"].endswith("T00:00:00+09:00")


def test_enable_provider_sends_control_record(server) -> None:
    server.ingested.clear()
    server.ctx.store.insert_rows(  # a provider is known once the store has seen it
        "rejected_records",
        [{"id": "r-newsapi", "source": "api", "reason": "x", "provider": "newsapi", "payload": "{}", "received_ts": 0}],
    )
    with server.client() as c:
        r = c.post("/admin/providers/enable", json={"provider": "newsapi"}, headers=AUTH)
        assert r.status_code == 202
        assert server.ingested == [{"_control": "enable_provider", "provider": "newsapi"}]
        r = c.post("/admin/providers/enable", json={"provider": "bad name!"}, headers=AUTH)
        assert r.status_code == 422 and len(server.ingested) == 1


def test_calibration_bins_with_production_reference(server, models) -> None:
    """The registry metadata of the version is the 'production' curve; delta_ece = live - reference."""
    import numpy as np

    rng = np.random.default_rng(3)
    t0, n = 1_763_683_200_000, 120
    close_time = t0 + 60_000 * np.arange(1, n + 1)
    prob = rng.uniform(0.05, 0.95, n)
    label = (rng.uniform(size=n) < prob).astype(int)
    store = server.ctx.store
    candle = {"symbol": "REF", "interval": "1m", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
    store.insert_rows("candles", [{**candle, "open_time": t0, "close_time": t0 + 60_000, "ingest_ts": t0 + 60_000}])
    store.insert_rows(
        "predictions",
        [
            {
                "symbol": "REF",
                "interval": "1m",
                "close_time": int(t),
                "horizon": 1,
                "model_version": "m-a",
                "prob": float(p),
                "fallback_reason": "",
                "latency_ms": 1.0,
            }
            for t, p in zip(close_time, prob)
        ],
    )
    store.insert_rows(
        "labels",
        [
            {
                "symbol": "REF",
                "interval": "1m",
                "close_time": int(t),
                "horizon": 1,
                "label": int(y),
                "close_t": 1.0,
                "close_th": 1.0,
            }
            for t, y in zip(close_time, label)
        ],
    )
    idx = np.minimum((prob * 5).astype(int), 4)  # CALIBRATION_BINS = 5 in the test settings
    ece = sum(
        (idx == b).sum() / n * abs(label[idx == b].mean() - prob[idx == b].mean()) for b in range(5) if (idx == b).any()
    )
    with server.client() as c:
        body = c.get("/api/calibration/bins", params={"model_version": "m-a", "scope": "REF"}).json()
    assert body["live"]["n"] == n and body["live"]["ece"] == pytest.approx(ece, rel=1e-9)
    assert body["production"]["version"] == "m-a" and body["production"]["ece"] == 0.03
    assert body["production"]["bins"] == [{"lo": 0.0, "hi": 1.0, "n": 100}]
    assert body["delta_ece"] == pytest.approx(ece - 0.03, rel=1e-9)


def test_unexpected_error_is_json_500_without_traceback(server, monkeypatch, caplog) -> None:
    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(server.ctx.store, "named", broken)
    with caplog.at_level("ERROR", logger="api.errors"), server.client() as c:
        r = c.get("/api/drift/events")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "internal error; the server log has the details"}
    assert "secret" not in r.text and "Traceback" not in r.text
    logged = [rec for rec in caplog.records if rec.name == "api.errors"]
    assert logged and logged[0].exc_info is not None and "secret internal detail" in str(logged[0].exc_info[1])


def test_ingest_failure_is_503(server, monkeypatch) -> None:
    def refuse(records: list[dict[str, Any]]) -> None:
        raise OSError("queue full")

    monkeypatch.setattr(server.ctx, "ingest", refuse)
    with server.client() as c:
        r = c.post(
            "/api/sentiment/tick",
            json={"symbol": "X", "ts": int(time.time() * 1000), "score": 0.1, "provider": "p"},
            headers=AUTH,
        )
    assert r.status_code == 503 and "queue full" in r.json()["error"] and "retry" in r.json()["error"]


def test_recalibrate_endpoint_starts_a_recalibrate_job(server) -> None:
    server.ctx.jobs.register("recalibrate", lambda params, progress: {"temperature": 1.3})
    with server.client() as c:
        assert c.post("/admin/recalibrate").status_code == 401
        r = c.post("/admin/recalibrate", json={"reason": "drift says recalibrate"}, headers=AUTH)
        assert r.status_code == 202 and r.json()["kind"] == "recalibrate"
        job = wait_job(c, r.json()["job_id"])
        assert job["status"] == "succeeded" and job["result"] == {"temperature": 1.3}
        assert job["params"] == {"reason": "drift says recalibrate"}
