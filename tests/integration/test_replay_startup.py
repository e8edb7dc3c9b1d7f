"""`tickcast replay --no-model`'s start-up (docs/decisions.md, "Replay start-up"): the store is
opened and migrated on a thread beside the flow's imports, and a flow without the model does
without the model and trading modules. Run as the command runs, in a process of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataflows.simulator import SimConfig, write_files

ROOT = Path(__file__).resolve().parents[2]
START = 1_763_683_200_000
NOT_IMPORTED = ("onnxruntime", "sklearn", "models", "dataflows.model_stage", "dataflows.trading")

SCRIPT = """
import json, sys
from tickcast.app.cli import main
try:
    main(["replay", "--store", sys.argv[1], "--input", sys.argv[2], "--no-model", "--no-progress"])
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""


def _replay(store: str, ticks: Path, cwd: Path) -> tuple[dict[str, int], list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, store, str(ticks)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary, modules = done.stdout.strip().splitlines()[-2:]
    added = {table: int(n) for table, n in re.findall(r"(\w+)=\+(\d+)", summary)}
    return added, json.loads(modules), done.stderr


def test_a_replay_without_the_model_imports_no_model_code_and_migrates_once(tmp_path: Path) -> None:
    write_files(SimConfig(symbols=2, hours=1.0, seed=5, start_ms=START, malformed_rate=0.02), tmp_path / "sim")
    ticks = tmp_path / "sim" / "ticks.jsonl"
    store = f"chdb://{tmp_path / 'store'}"

    added, modules, log = _replay(store, ticks, tmp_path)
    assert added["sentiment_ticks"] > 0 and added["sentiment_bars"] > 0 and added["rejected_records"] > 0
    assert added["predictions"] == 0
    assert "applied migration 001_init.sql" in log
    loaded = [m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_IMPORTED)]
    assert loaded == []
    assert "scipy.linalg" not in modules  # Numba's BLAS probe is skipped (dataflows/kernels/numba_target.py)

    # the same replay again, on the store it filled: no migration is applied again, no row added
    again, _, log = _replay(store, ticks, tmp_path)
    assert set(again.values()) == {0}
    assert "applied migration" not in log


def test_a_relative_input_is_the_file_it_named_while_the_store_starts_beside_it(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is opened on a thread while the source is made; chdb's start-up moves the
    working directory for a moment (here: a store thread that moves it to / for a second).
    A relative `--input` must still name the file in the directory the replay was started in."""
    import threading
    import time

    from tickcast.app import backfill
    from tickcast.settings import load_settings

    write_files(SimConfig(symbols=2, hours=0.5, seed=3, start_ms=START), tmp_path / "sim")
    monkeypatch.chdir(tmp_path / "sim")
    real_open = backfill._open_store
    moved = threading.Event()

    def open_like_chdb(s: Any) -> dict[str, int]:  # the working directory elsewhere while "chdb starts"
        here = os.getcwd()
        os.chdir("/")
        moved.set()
        try:
            time.sleep(1.0)
        finally:
            os.chdir(here)
        return real_open(s)

    monkeypatch.setattr(backfill, "_open_store", open_like_chdb)
    import dataflows.sources as sources  # run_replay imports the source from here, after the thread started

    made = sources.FileReplaySource

    class WaitsForTheMove(made):  # made only once the store thread has moved the directory
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            assert moved.wait(10)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sources, "FileReplaySource", WaitsForTheMove)
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"))
    summary = backfill.run_replay(settings, inputs=[Path("ticks.jsonl")], store=store, progress=False, with_model=False)
    found = re.search(r"sentiment_ticks=\+(\d+)", summary)
    assert found is not None and int(found.group(1)) > 0


# The `tickcast` command as the process runs it (its own argv), with an atexit hook that says
# whether the interpreter's shutdown ran.
AS_COMMAND = """
import atexit, runpy, sys
atexit.register(lambda: print("interpreter shutdown", file=sys.stderr, flush=True))
sys.argv = ["tickcast", *sys.argv[1:]]
runpy.run_module("tickcast.app.cli", run_name="__main__")
"""

COUNT = """
import json, sys
from tickcast.app.backfill import SUMMARY_TABLES
from tickcast.store import Store
store = Store(sys.argv[1])
print(json.dumps({t: store.count(t) for t in SUMMARY_TABLES}))
"""


def test_the_replay_command_ends_its_process_at_once_with_every_row_stored(tmp_path: Path) -> None:
    """`tickcast replay` ends with os._exit once its store is closed and its summary written
    (tickcast/app/cli.py, `_Tickcast`): the rows are all in the store, the summary and the logs
    are out, the status is 0; a failing replay still exits through the interpreter, non-zero."""
    write_files(SimConfig(symbols=3, hours=1.0, seed=7, start_ms=START, malformed_rate=0.02), tmp_path / "sim")
    store = f"chdb://{tmp_path / 'store'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["replay", "--store", store, "--input", str(tmp_path / "sim" / "ticks.jsonl"), "--no-model", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-c", AS_COMMAND, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreter shutdown" not in done.stderr  # ended early
    assert "applied migration 006_trading_checkpoints.sql" in done.stderr  # the logs were flushed
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("replayed ")
    added = {table: int(n) for table, n in re.findall(r"(\w+)=\+(\d+)", summary)}
    assert added["sentiment_ticks"] > 0 and added["sentiment_bars"] > 0 and added["rejected_records"] > 0

    counted = subprocess.run(
        [sys.executable, "-c", COUNT, store], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert counted.returncode == 0, counted.stderr[-3000:]
    assert json.loads(counted.stdout.strip().splitlines()[-1]) == added  # a fresh store: added = stored

    failed = subprocess.run(
        [sys.executable, "-c", AS_COMMAND, *args, "--account", "bad account!"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1 and "replay account" in failed.stderr
    assert "interpreter shutdown" in failed.stderr
