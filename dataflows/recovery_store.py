"""Bytewax recovery store housekeeping: drop what a killed run snapshotted past its resume point.

Bytewax 0.21 writes a step's snapshot of epoch E as soon as that step closes E, and writes
the worker's frontier (what the next run resumes from) only once *every* step closed E. A
run killed in between — typically while the store sink's `snapshot()` waits for its inserts
at the end of E — leaves snapshots at epochs ≥ the resume epoch R. The next run starts at R
and ignores them (it loads `snap_epoch < R`), but nothing deletes them: a key it snapshots
again at the same epoch overwrites its leftover, a key it does not touch in that epoch keeps
it. Later that leftover is taken for the key's state — by the next resume (the newest
snapshot below its resume epoch) or, sooner, by the garbage collector, which keeps the newest
snapshot at or below the committed epoch and deletes the correct older one. The key then
resumes with state from a run whose rows were never stored and whose input offsets were not
committed (issue 15: a symbol shard holding ticks that were never stored, the re-delivered
ticks refused as duplicates).

`discard_uncommitted_snapshots` removes those leftovers before a run starts: snapshots at
epochs ≥ the resume epoch are never loaded by the run about to start (it re-computes those
epochs), so deleting them changes nothing but the leftovers' later use.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_EPOCH = 1  # Bytewax's resume epoch when the store holds no progress (ResumeFrom::default)


def _parts(directory: Path) -> list[Path]:
    """The recovery partitions Bytewax opens: every `*.sqlite3` file of the directory."""
    return sorted(p for p in directory.iterdir() if p.suffix == ".sqlite3" and p.is_file())


def resume_epoch(directory: str | Path) -> int:
    """The epoch Bytewax 0.21 resumes from (src/recovery.rs, `RecoveryPart::resume_from`):
    for the newest execution, each worker's progress is the larger of the execution's resume
    epoch and the newest frontier that worker wrote; the resume epoch is the smallest over
    the workers (`FIRST_EPOCH` when no execution was recorded)."""
    exs: list[tuple[int, int, int]] = []
    fronts: list[tuple[int, int, int]] = []
    for part in _parts(Path(directory)):
        with closing(sqlite3.connect(part, timeout=30)) as con:
            exs += con.execute("SELECT ex_num, worker_count, resume_epoch FROM exs").fetchall()
            fronts += con.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts").fetchall()
    if not exs:
        return FIRST_EPOCH
    newest = max(ex for ex, _, _ in exs)
    rows = [(count, epoch) for ex, count, epoch in exs if ex == newest]
    # One row per execution in practice; if there were more, err towards a later epoch
    # (a leftover kept is the old behaviour, a needed snapshot deleted would be worse).
    workers, started = min(count for count, _ in rows), max(epoch for _, epoch in rows)
    progress = {w: started for w in range(workers)}
    for ex, worker, frontier in fronts:
        if ex == newest:
            progress[worker] = max(progress.get(worker, frontier), frontier)
    return min(progress.values()) if progress else FIRST_EPOCH


def discard_uncommitted_snapshots(directory: str | Path) -> int:
    """Delete every snapshot at an epoch ≥ the resume epoch (see the module doc); returns how
    many. Call before the run starts (every process of a cluster may: it computes the same
    epoch, and no process writes before all of them have connected)."""
    path = Path(directory)
    epoch = resume_epoch(path)
    deleted = 0
    for part in _parts(path):
        with closing(sqlite3.connect(part, timeout=30)) as con, con:
            deleted += con.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (epoch,)).rowcount
    if deleted:
        log.info("recovery store %s: dropped %d snapshot(s) the last run took at epochs >= %d", path, deleted, epoch)
    return deleted
