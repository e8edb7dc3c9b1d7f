"""The store's disk fills up under a running `tickcast up` (item 11 of issue 15).

A real full device: the chdb directory is on a 64 MB tmpfs the test creates and fills
with a filler file (see `harness.SmallDisk`); chdb refuses inserts with NOT_ENOUGH_SPACE.
What must hold: /healthz says so, ingest answers 503 + Retry-After instead of acknowledging
into nothing, every acknowledged record is stored once space returns, and SIGTERM ends the
process within TICKCAST_SHUTDOWN_TIMEOUT_S whether or not the store recovered.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import SmallDisk, Up, stored_tick_ids

pytestmark = pytest.mark.e2e
SHUTDOWN_S = 8


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "small", 64)
    try:
        yield small
    finally:
        small.close()


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def _wait_status(up: Up, status: int, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = up.healthz()
        if r.status_code == status:
            return r.json()  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"/healthz did not answer {status} within {timeout}s: {r.status_code} {r.text}")


def test_queued_acks_survive_a_full_disk_and_sigterm_flushes(disk: SmallDisk, tmp_path: Path) -> None:
    url = f"chdb://{disk.mountpoint}/ch"
    up = Up(
        url,
        tmp_path,
        wrap=disk.wrap,
        TICKCAST_INGEST_ACK="queued",
        TICKCAST_INGEST_BUFFER_RECORDS=1_500,
        TICKCAST_WRITE_FLUSH_MS=100,
        TICKCAST_SHUTDOWN_TIMEOUT_S=SHUTDOWN_S,
    )
    acked: list[str] = []
    try:
        up.wait_healthy()
        before = _ids("before", 50)
        assert up.post_ticks(before).status_code == 202
        acked += before
        time.sleep(0.5)  # written: the disk is full only from now on

        disk.fill()
        refused = None
        accepted_during = 0
        for n in range(100):  # accepted into the bounded buffer until it is full, then 503
            ids = _ids(f"during{n}", 100)
            r = up.post_ticks(ids)
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 202, r.text
            acked += ids
            accepted_during += len(ids)
            time.sleep(0.05)
        assert refused is not None, "ingest kept answering 202 with the store failing and the buffer full"
        assert refused.headers["Retry-After"].isdigit()
        assert "buffer is full" in refused.json()["error"] and "NOT_ENOUGH_SPACE" in refused.json()["error"]
        # bounded: the buffer (refused once a request no longer fits), plus what the flow took
        # before the first failed insert made it hold (a few batches; more on a loaded machine)
        assert 1_400 < accepted_during < 1_500 + 5_000, accepted_during
        health = _wait_status(up, 503, 10)
        assert health["store_writes"] is False and "store_writes" in health["failing"]
        assert "NOT_ENOUGH_SPACE" in health["error"] and "ingest buffer" in health["error"]

        disk.free()
        freed = time.monotonic()
        health = _wait_status(up, 200, 30)  # retried with back-off until it succeeds (≤ 5 s apart)
        recovered_s = time.monotonic() - freed
        assert health["store_writes"] is True
        after = _ids("after", 200)
        assert up.post_ticks(after).status_code == 202
        acked += after
        started = time.monotonic()
        up.signal(signal.SIGTERM)  # at once: what the flow holds is written before the exit
        status = up.wait(SHUTDOWN_S + 5)
        took = time.monotonic() - started
    finally:
        up.close()
    log = up.log()
    assert status == 0, log[-3000:]
    assert took < SHUTDOWN_S + 2
    assert "everything accepted was stored" in log
    assert "store write recovered" in log and "store write failed" in log
    stored = stored_tick_ids(url, wrap=disk.wrap)
    lost = set(acked) - stored
    print(
        f"[figures] {disk.how}; queued: {accepted_during} ticks accepted during the fault before the first 503; "
        f"healthy {recovered_s:.1f} s after space returned; SIGTERM exit 0 in {took:.1f} s; "
        f"lost {len(lost)} of {len(acked)} acknowledged"
    )
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged ticks were lost"


def test_stored_acks_refuse_during_the_fault_and_sigterm_ends_within_the_bound(disk: SmallDisk, tmp_path: Path) -> None:
    url = f"chdb://{disk.mountpoint}/ch"
    up = Up(
        url,
        tmp_path,
        wrap=disk.wrap,
        TICKCAST_INGEST_ACK="stored",
        TICKCAST_INGEST_ACK_TIMEOUT_MS=4_000,
        TICKCAST_SHUTDOWN_TIMEOUT_S=SHUTDOWN_S,
    )
    acked: list[str] = []
    try:
        up.wait_healthy()
        first = _ids("first", 100)
        r = up.post_ticks(first)
        assert r.status_code == 202 and r.json() == {"accepted": 100, "stored": True}
        acked += first

        disk.fill()
        answers = []
        for n in range(4):
            started = time.monotonic()
            r = up.post_ticks(_ids(f"full{n}", 50))
            answers.append((r.status_code, time.monotonic() - started, r))
        assert [code for code, _, _ in answers] == [503] * 4  # never 202 while nothing can be stored
        assert all(took < 4.5 for _, took, _ in answers)  # within the ack timeout
        assert all(r.headers["Retry-After"].isdigit() for _, _, r in answers)
        assert "NOT_ENOUGH_SPACE" in answers[-1][2].json()["error"]
        health = _wait_status(up, 503, 10)
        assert "store_writes" in health["failing"]

        started = time.monotonic()
        up.signal(signal.SIGTERM)  # the store still fails: the stop gives up at the deadline
        status = up.wait(SHUTDOWN_S + 5)
        took = time.monotonic() - started
    finally:
        up.close()
    log = up.log()
    assert status == 1, log[-3000:]
    assert took < SHUTDOWN_S + 1
    assert "not everything accepted could be stored" in log
    disk.free()
    stored = stored_tick_ids(url, wrap=disk.wrap)
    print(
        f"[figures] stored: 503 answers in {', '.join(f'{t:.2f}' for _, t, _ in answers)} s during the fault; "
        f"SIGTERM during the fault: exit {status} in {took:.1f} s (bound {SHUTDOWN_S} s); "
        f"{len(set(acked) & stored)} of {len(acked)} acknowledged stored"
    )
    assert set(acked) <= stored  # every 202 (stored) survived, although the stop gave up
