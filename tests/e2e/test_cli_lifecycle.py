"""As a user would: the `tickcast` commands in subprocesses, and `tickcast up` over HTTP.

simulate -> replay -> train -> `tickcast up --no-simulator` -> promote while it runs ->
its predictions carry the new version (hot reload, no restart).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dataflows.simulator import SimConfig, generate
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
START = 1_763_683_200_000
KEY = {"X-API-Key": "tickcast-dev-key"}


def tickcast(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tickcast.app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TICKCAST_LOG_LEVEL": "WARNING", **(env or {})},
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tickcast {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def up_server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    store, models = tmp_path / "ch", tmp_path / "models"
    yield f"chdb://{store}", models, tmp_path


def _start_up(
    store: str, models: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickcast.app.cli",
            "up",
            "--store",
            store,
            "--model-dir",
            str(models),
            "--port",
            str(port),
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "TICKCAST_LOG_LEVEL": "WARNING", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("tickcast up did not become healthy within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _post_minutes(base: str, records: list[dict[str, Any]]) -> None:
    ticks = [r for r in records if "score" in r]
    candles = [r for r in records if "open_time" in r]
    for i in range(0, len(ticks), 500):
        assert (
            httpx.post(f"{base}/api/sentiment/tick", json={"ticks": ticks[i : i + 500]}, headers=KEY).status_code == 202
        )
    for i in range(0, len(candles), 500):
        r = httpx.post(f"{base}/api/market/candle", json={"candles": candles[i : i + 500]}, headers=KEY)
        assert r.status_code == 202, r.text


def _predictions(base: str, symbol: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/predictions", params={"symbol": symbol, "limit": 10000})
    return r.json()["rows"] if r.status_code == 200 else []


def test_simulate_replay_train_then_promote_into_a_running_system(up_server: tuple[str, Path, Path]) -> None:
    store, models, tmp = up_server
    sim = tmp / "sim"
    # HTTP ingest is live: the server stamps ingest_ts and refuses future records, so the
    # simulated history ends 45 minutes ago and its next half hour is posted (ticks up to an
    # hour old, allowed by a long SENTIMENT_MAX_LATENCY_MS for this running system).
    start = (int(time.time() * 1000) - 12 * 3_600_000 - 45 * 60_000) // 60_000 * 60_000
    out = tickcast(
        "simulate", "--symbols", "8", "--hours", "12", "--seed", "4", "--out", str(sim), "--start-ms", str(start)
    ).stdout
    assert "ticks" in out and (sim / "ticks.jsonl").exists() and (sim / "candles.jsonl").exists()
    summary = tickcast(
        "replay", "--input", str(sim), "--store", store, "--model-dir", str(models), "--no-progress"
    ).stdout
    assert "candles=+5760" in summary  # 8 symbols x 12 h of 1m candles
    again = tickcast("replay", "--input", str(sim), "--store", store, "--model-dir", str(models), "--no-progress")
    assert "sentiment_ticks=+0" in again.stdout and "candles=+0" in again.stdout
    trained = json.loads(tickcast("train", "--store", store, "--model-dir", str(models)).stdout)
    version = trained["version"]
    assert trained["passed"] and trained["brier"] < trained["baseline_brier"]  # beats the baseline
    listed = json.loads(tickcast("models", "list", "--json", "--store", store, "--model-dir", str(models)).stdout)
    assert [m["version"] for m in listed] == [version] and listed[0]["status"] == "candidate"
    assert {"version", "status", "sha256", "created_at", "metrics"} <= set(listed[0])

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_up(store, models, port, "--no-simulator", env={"SENTIMENT_MAX_LATENCY_MS": "86400000"})
    try:
        # the CLI training ran as a job, recorded like any other
        jobs = httpx.get(f"{base}/admin/jobs", params={"kind": "train"}, headers=KEY).json()["jobs"]
        assert [(j["trigger"], j["status"], j["result"]["version"]) for j in jobs] == [("cli", "succeeded", version)]
        follow = [r for r in generate(SimConfig(symbols=8, hours=0.5, seed=4, start_ms=start + 12 * 3_600_000))]
        first, second = follow[: len(follow) // 2], follow[len(follow) // 2 :]
        _post_minutes(base, first)
        live_from = start + 12 * 3_600_000

        def new_rows() -> list[dict[str, Any]]:
            return [p for p in _predictions(base, "BTCUSDT") if p["close_time"] > live_from]

        deadline = time.time() + 30
        while time.time() < deadline and len(new_rows()) < 10:
            time.sleep(0.3)
        assert len(new_rows()) >= 10
        assert {p["model_version"] for p in new_rows()} == {"baseline"}
        assert {p["fallback_reason"] for p in new_rows()} == {"no_model"}

        # Promote from the command line while the system runs (its store is busy: the
        # registry on disk is what the flow watches).
        tickcast("models", "promote", version, "--store", store, "--model-dir", str(models))
        _post_minutes(base, second)
        deadline = time.time() + 30
        while time.time() < deadline:
            if any(p["model_version"] == version for p in _predictions(base, "BTCUSDT")):
                break
            time.sleep(0.3)
        served = [p["model_version"] for p in new_rows()]
        assert version in served and served[0] == "baseline"
        # ... and once switched, it stays switched (no flapping back to the baseline)
        assert "baseline" not in served[served.index(version) :]
        status = httpx.get(f"{base}/api/models/promotion-status").json()
        assert status["production"] == version or status.get("production", {}).get("version") == version
    finally:
        _stop(proc)


def test_bad_setting_stops_start_up_naming_the_variable() -> None:
    proc = tickcast("db", "migrate", "--store", "chdb:///tmp/never", env={"CALIBRATION_BINS": "0"}, check=False)
    assert proc.returncode != 0
    assert "CALIBRATION_BINS" in proc.stderr and "greater than or equal to 2" in proc.stderr


def test_help_lists_the_commands() -> None:
    out = tickcast("--help").stdout
    for command in ("up", "db", "simulate", "replay", "train", "models", "labeler", "flow", "api"):
        assert f"  {command}" in out


def test_models_commands_backup_restore_rollback_cleanup(tmp_path: Path) -> None:
    """The registry commands as an operator types them (seed 004: backup, restore, cleanup)."""
    import numpy as np
    import pandas as pd

    from models.registry import ModelRegistry
    from models.training import Gates, train_model
    from tickcast.features import MARKET_FEATURES

    names = list(MARKET_FEATURES)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, len(names)))
    df = pd.DataFrame(X, columns=names)
    df["label"] = (rng.random(2000) < 1 / (1 + np.exp(-2 * X[:, 0]))).astype(int)
    df["symbol"], df["close_time"] = "S", START + np.arange(2000) * 60_000
    models = tmp_path / "models"
    registry = ModelRegistry(models)
    first = registry.register(train_model(df, feature_names=names, gates=Gates(0.5, 0.3), ablation=False))
    second = registry.register(
        train_model(df.assign(label=1 - df["label"]), feature_names=names, gates=Gates(0.5, 0.3), ablation=False)
    )
    store = f"chdb://{tmp_path / 'ch'}"
    env = {"PROMOTION_COOLDOWN_SECONDS": "0"}
    run = lambda *a: tickcast("models", *a, "--store", store, "--model-dir", str(models), env=env)  # noqa: E731
    run("promote", first)
    run("promote", second)
    assert json.loads(run("status").stdout)["production"] == second
    run("backup")  # production's files into backups/
    assert (models / "backups" / f"{second}.onnx").exists()
    onnx = models / "trained" / f"{second}.onnx"
    onnx.write_bytes(b"corrupted")
    restored = json.loads(run("restore", second).stdout)
    assert restored and ModelRegistry(models).load_production().version == second  # sha256 verified again
    rolled = json.loads(run("rollback").stdout)
    assert ModelRegistry(models).production()["version"] == first, rolled
    listed = {m["version"]: m["status"] for m in json.loads(run("list", "--json").stdout)}
    assert listed[first] == "production"
    out = run("cleanup", "--older-than", "0").stdout
    assert first not in out.split(":")[-1]  # never the production model
    assert "removed" in out
    refused = tickcast("models", "restore", "m-missing", "--store", store, "--model-dir", str(models), check=False)
    assert refused.returncode != 0 and "m-missing" in refused.stderr
