"""Event ids: strictly increasing and time-ordered, one at a time or in blocks."""

from __future__ import annotations

import time

from tickcast.bus import IdClock


def test_ids_taken_in_blocks_continue_the_sequence_of_single_ids() -> None:
    clock = IdClock()
    ids = [clock.next()]
    ids += list(clock.take(5))
    ids.append(clock.next())
    ids += list(clock.take(0))
    ids += list(clock.take(3))
    assert len(ids) == 10 and all(b > a for a, b in zip(ids, ids[1:]))
    # the high bits are the wall clock in ms: an id taken now is at least now << 12
    now_ms = int(time.time() * 1000)
    assert clock.take(1)[0] >= now_ms << 12
    assert ids[0] >> 12 <= now_ms
