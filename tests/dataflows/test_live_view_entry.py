"""`SentimentState.latest` calls `live_view` through its compiled entry point after the first
call (dataflows/kernels/entry.py): the same views as through the dispatcher, the entry point
kept out of snapshots, and snapshots from before it still load."""

from __future__ import annotations

import pickle

import numpy as np

from dataflows.kernels import sentiment as ks
from dataflows.sentiment_state import SentimentConfig, SentimentState
from tests.dataflows.test_kernel_entry import STEP, _ticks


def _feed(state: SentimentState, seed: int, rounds: int) -> str:
    """Ticks in rounds, each round closing what it can, and the live views after each, as
    text (a view without aggregation weights has a NaN composite, which == never matches)."""
    rng = np.random.default_rng(seed)
    views = []
    for r in range(rounds):
        n = int(rng.integers(0, 6))  # some rounds without a tick: the view of an empty pending list
        batch = _ticks(rng, r * STEP, n, span=STEP)
        state.add_ticks(batch)
        now = (r + 1) * STEP + int(rng.integers(0, 5_000))
        state.advance(now)
        views.append(state.latest(now))
    return repr(views)


def _dispatcher_only(state: SentimentState) -> SentimentState:
    """`state` whose `latest` keeps calling the dispatcher: the reference."""
    state._view_kernel = ks.live_view
    return state


def test_latest_through_the_entry_point_gives_what_the_dispatcher_gives() -> None:
    resolved, reference = SentimentState(SentimentConfig()), _dispatcher_only(SentimentState(SentimentConfig()))
    views = _feed(resolved, 3, 40)
    assert resolved._view_kernel not in (None, ks.live_view)  # resolved by the first view
    assert views == _feed(reference, 3, 40)


def test_snapshots_hold_no_view_kernel_and_old_snapshots_load() -> None:
    state = SentimentState(SentimentConfig())
    _feed(state, 4, 20)
    assert "_view_kernel" not in state.__getstate__()
    restored = pickle.loads(pickle.dumps(state))
    assert restored._view_kernel is None
    # what the previous version pickled: the same dict (it never had the attribute)
    old = SentimentState.__new__(SentimentState)
    old.__setstate__(pickle.loads(pickle.dumps(state.__getstate__())))
    assert old._view_kernel is None
    expected = _feed(state, 5, 20)
    assert _feed(restored, 5, 20) == expected
    assert _feed(old, 5, 20) == expected
