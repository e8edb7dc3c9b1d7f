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

    # the same replay again, on the store it filled: no migration is applied again, no row added
    again, _, log = _replay(store, ticks, tmp_path)
    assert set(again.values()) == {0}
    assert "applied migration" not in log
