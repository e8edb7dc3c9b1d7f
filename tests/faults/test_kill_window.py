"""SIGKILL right after a 202 (item 12 of issue 15): what an acknowledgement is worth in embedded mode.

With TICKCAST_INGEST_ACK=queued a 202 means "in memory": records wait for the flow's write
batching (TICKCAST_WRITE_FLUSH_MS) and the insert, so a kill right after the 202 loses them —
the control case, which shows this harness sees a loss when there is one. With `stored` (the
default) the 202 comes after the rows' insert: a kill right after it loses nothing. The full
measurement over many delays is `bench/durability.py` (figures in docs/reliability.md).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults.harness import Up, stored_tick_ids

pytestmark = pytest.mark.e2e
N = 240  # the batch


def _post_then_kill(tmp_path: Path, name: str, ack: str, delay_s: float) -> tuple[int, int]:
    """(status of the POST, ticks of it found in the store after the kill)."""
    url = f"chdb://{tmp_path / name}"
    up = Up(url, tmp_path, TICKCAST_INGEST_ACK=ack)
    try:
        up.wait_healthy()
        ids = [f"{name}-{i}" for i in range(N)]
        r = up.post_ticks(ids)
        time.sleep(delay_s)
        up.signal(signal.SIGKILL)
        up.wait(10)
    finally:
        up.close()
    return r.status_code, len(stored_tick_ids(url) & set(ids))


def test_a_stored_ack_survives_sigkill_at_once(tmp_path: Path) -> None:
    assert _post_then_kill(tmp_path, "stored0", "stored", 0.0) == (202, N)


def test_a_queued_ack_is_lost_by_sigkill_at_once_but_not_after_the_write_window(tmp_path: Path) -> None:
    status, kept = _post_then_kill(tmp_path, "queued0", "queued", 0.0)
    print(f"[figures] queued, SIGKILL at once after the 202: {kept} of {N} kept")
    assert status == 202 and kept < N  # the control: the harness sees a loss when there is one
    # the documented bound of the window: flush (500 ms) + LiveGate (≤ 250 ms) + the insert, with margin
    assert _post_then_kill(tmp_path, "queued2", "queued", 2.0) == (202, N)
