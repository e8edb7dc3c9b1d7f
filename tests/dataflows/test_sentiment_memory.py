"""The dedup memory is rewritten in place (`kernels.sentiment.dedup_into`, arrays with room):
a state restored from a snapshot written before that (exact-size arrays, no count) goes on
exactly as the state that was never stopped, and a snapshot holds the memory's entries only."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.kernels import sentiment as k
from dataflows.sentiment_state import SentimentConfig, SentimentState, TickBatch

T0 = 1_700_000_000_020_000 // 60_000 * 60_000


def _stream(seed: int, n: int) -> list[tuple[list[dict[str, Any]], int]]:
    """Batches of a few ticks (ids drawn from a few dozen, so duplicates within the window),
    each with the watermark to advance to after it."""
    rng = np.random.default_rng(seed)
    out, t = [], T0
    for _ in range(n):
        recs: list[dict[str, Any]] = []
        for _ in range(int(rng.integers(1, 6))):
            ts = t + int(rng.integers(-5_000, 60_000))
            recs.append(
                {
                    "ts": ts,
                    "ingest_ts": max(ts, t) + int(rng.integers(0, 3_000)),
                    "score": float(rng.uniform(-1, 1)),
                    "polarity": int(rng.integers(-1, 2)),
                    "id": f"id{int(rng.integers(0, 40))}",
                }
            )
        out.append((sorted(recs, key=lambda r: r["ingest_ts"]), t + 30_000))
        t += 30_000
    return out


def _nan_free(item: tuple[str, Any]) -> tuple[str, Any]:
    """(name, value) with NaN spelled out: NaN equals nothing, itself included."""
    name, value = item
    return name, "NaN" if isinstance(value, float) and np.isnan(value) else value


def _run(state: SentimentState, batches: list[tuple[list[dict[str, Any]], int]]) -> list[Any]:
    got: list[Any] = []
    for recs, watermark in batches:
        got.append(state.add_ticks(TickBatch.from_records(recs)).tolist())
        got.append([sorted(map(_nan_free, row.items())) for row in state.advance(watermark)])
    return got


def _as_older_snapshot(state: SentimentState) -> SentimentState:
    """What loading a snapshot of this state written by the code before `_seen_n` gives."""
    old = pickle.loads(pickle.dumps(state.__getstate__()))  # copies: nothing shared with `state`
    del old["_seen_n"]
    restored = SentimentState.__new__(SentimentState)
    restored.__setstate__(old)
    return restored


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 60))
def test_a_state_restored_from_an_older_snapshot_goes_on_as_the_running_one(seed: int, cut: int) -> None:
    batches = _stream(seed, 80)
    running = SentimentState(SentimentConfig())
    _run(running, batches[:cut])
    restored = _as_older_snapshot(running)
    assert restored.seen_ids.tolist() == running.seen_ids.tolist()
    assert _run(restored, batches[cut:]) == _run(running, batches[cut:])


def test_a_snapshot_holds_the_memory_entries_only() -> None:
    state = SentimentState(SentimentConfig())
    _run(state, _stream(3, 40))
    assert state._seen_hash.size > state._seen_n > 0  # room after the entries
    back = pickle.loads(pickle.dumps(state))
    assert back._seen_hash.size == back._seen_n == state._seen_n
    assert back.seen_ids.tolist() == state.seen_ids.tolist()
    assert np.all(np.diff(back.seen_ids) > 0)


def test_dedup_into_leaves_the_room_after_the_entries_alone() -> None:
    """In place: only the first `mem_n + batch` slots are written; the result is `dedup`'s."""
    mem_h = np.array([-7, 3, 9, 40, -1, -1, -1, -1, 99, 99], np.int64)
    mem_t = np.array([100, 900, 300, 1_000, -1, -1, -1, -1, 99, 99], np.int64)
    hashes = np.array([9, 5, 5, -8], np.int64)
    ingest = np.array([1_000, 1_000, 1_050, 1_100], np.int64)
    late = np.zeros(4, np.bool_)
    expected = k.dedup(mem_h[:4].copy(), mem_t[:4].copy(), hashes, ingest, late, 500, 600)
    status, kept = k.dedup_into(mem_h, mem_t, 4, hashes, ingest, late, 500, 600)
    assert status.tolist() == expected[0].tolist() == [k.ACCEPTED, k.ACCEPTED, k.DUPLICATE, k.ACCEPTED]
    assert mem_h[:kept].tolist() == expected[1].tolist() == [-8, 3, 5, 9, 40]
    assert mem_t[:kept].tolist() == expected[2].tolist() == [1_100, 900, 1_000, 1_000, 1_000]
    assert mem_h[8:].tolist() == [99, 99] and mem_t[8:].tolist() == [99, 99]
