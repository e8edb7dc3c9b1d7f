"""Issue 15: a killed run's snapshots past its resume point must never become a key's state.

A flow in miniature (tests/dataflows/leftover_flow.py: source -> `seen` -> sink whose
snapshot writes) is SIGKILLed three ways, each run resuming from the recovery store the
last one left, as the kill loop does to a Kafka replay:

1. killed while its sink's end-of-epoch snapshot waits (the store sink waiting for its
   inserts): `seen` has already snapshotted that epoch, the sink never finished it, so the
   resume epoch is that epoch and `seen`'s snapshot of it is a leftover;
2. resumed, killed after committing an epoch or more in which `seen` got no input (a
   resumed replay's first epochs); `seen` never overwrote its leftover;
3. resumed to the end.

Bytewax 0.21 would load the leftover in run 3 (the newest snapshot below the resume epoch):
`seen` then holds the items of the epoch the sink never wrote, refuses them when the source
re-sends them, and they are never written. `prepare_recovery` drops the leftovers.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflows.recovery_store import discard_uncommitted_snapshots, resume_epoch
from tests.dataflows import leftover_flow

ROOT = Path(__file__).resolve().parents[2]


def _start(phase: str, recovery: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.dataflows.leftover_flow", phase, str(recovery), str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )


def _snaps(recovery: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True, timeout=5) as con:
        return con.execute("SELECT step_id, state_key, snap_epoch FROM snaps").fetchall()


def _wait(proc: subprocess.Popen[bytes], done: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if proc.poll() is not None:
            raise AssertionError(f"the flow ended before {what}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _leftovers(recovery: Path) -> list[tuple[str, str, int]]:
    epoch = resume_epoch(recovery)
    return [s for s in _snaps(recovery) if s[0] == "leftover.seen" and s[2] >= epoch]


@pytest.mark.timeout(180)
def test_a_killed_runs_snapshots_past_its_resume_point_are_not_resumed_from(tmp_path: Path) -> None:
    recovery, out = tmp_path / "recovery", tmp_path / "out.txt"

    # 1. killed while the sink finishes the epoch holding MARK; `seen` snapshotted that epoch
    first = _start("stall", recovery, out)
    _wait(first, lambda: Path(f"{out}.stalled").exists() and _leftovers(recovery), "a snapshot past the resume epoch")
    _kill(first)
    stalled_at = resume_epoch(recovery)
    assert _leftovers(recovery), "run 1 left no snapshot past its resume epoch: the case is not set up"
    written = {int(line) for line in out.read_text().split()}
    assert leftover_flow.MARK not in written  # the stalled epoch's items were never written

    # 2. resumed; no input for `seen`; killed once it committed past the stalled epoch
    second = _start("idle", recovery, out)
    _wait(second, lambda: resume_epoch(recovery) > stalled_at + 1, "run 2 to commit epochs of its own")
    _kill(second)

    # 3. resumed to the end: every item is written
    third = subprocess.run(
        [sys.executable, "-m", "tests.dataflows.leftover_flow", "run", str(recovery), str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=120,
    )
    assert third.returncode == 0, third.stderr.decode()[-2000:]
    written = {int(line) for line in out.read_text().split()}
    assert sorted(set(range(leftover_flow.N)) - written) == [], "items never written"


def test_discard_keeps_what_the_resume_loads(tmp_path: Path) -> None:
    """Only snapshots at epochs >= the resume epoch go; the rows Bytewax loads stay."""
    from bytewax.recovery import init_db_dir

    init_db_dir(tmp_path, 1)
    with sqlite3.connect(tmp_path / "part-0.sqlite3") as con:
        con.execute("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (0, 1, 1), (1, 1, 5)")
        con.execute("INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (0, 0, 5), (1, 0, 7)")
        con.executemany(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            [("s", "a", e, b"x") for e in (3, 6, 7, 8)] + [("s", "b", 7, None)],
        )
    assert resume_epoch(tmp_path) == 7
    assert discard_uncommitted_snapshots(tmp_path) == 3
    with sqlite3.connect(tmp_path / "part-0.sqlite3") as con:
        assert con.execute("SELECT state_key, snap_epoch FROM snaps ORDER BY 1, 2").fetchall() == [("a", 3), ("a", 6)]
    assert discard_uncommitted_snapshots(tmp_path) == 0


def test_resume_epoch_of_an_empty_store_is_the_first(tmp_path: Path) -> None:
    from bytewax.recovery import init_db_dir

    init_db_dir(tmp_path, 2)
    assert resume_epoch(tmp_path) == 1
