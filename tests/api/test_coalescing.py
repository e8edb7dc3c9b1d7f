"""The sentiment stream's rate limit (`api.sse._coalesced`), driven on a real asyncio event loop
whose clock is virtual (looptime: time moves only when every task waits for a timer), so the
GCRA arithmetic is checked exactly, whatever the machine's load: jittered feeds at the rate
pass undelayed, floods are cut to the rate."""

from __future__ import annotations

import asyncio
import random

import looptime
import pytest

from api.sse import _coalesced
from tickcast.bus import Event

INTERVAL = 0.04  # 25 Hz


async def _drive(arrivals: list[float], burst: int, symbol: str = "S") -> list[tuple[int, float]]:
    """Put a state at each arrival time (s from start); returns (state index, send time) per sent state."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    start = loop.time()
    sent: list[tuple[int, float]] = []

    async def feed() -> None:
        for i, at in enumerate(arrivals):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            queue.put_nowait(Event("sentiment", i + 1, {"kind": "tick", "i": i, "at": start + at}, symbol))

    async def read() -> None:
        async for event, _ in _coalesced(queue, 0, INTERVAL, burst):
            sent.append((event.data["i"], loop.time() - start))

    reader = asyncio.create_task(read())
    await feed()
    await asyncio.sleep(3 * INTERVAL)
    reader.cancel()
    return sent


def _run(arrivals: list[float], burst: int) -> list[tuple[int, float]]:
    """`_drive` on a fresh loop with virtual time, on a thread of its own (the browser tests
    may leave a loop running on the main thread)."""
    from concurrent.futures import ThreadPoolExecutor

    def run() -> list[tuple[int, float]]:
        loop = looptime.new_event_loop(start=0.0)
        try:
            return loop.run_until_complete(_drive(arrivals, burst))
        finally:
            loop.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _delays(arrivals: list[float], sent: list[tuple[int, float]]) -> list[float]:
    return [t - arrivals[i] for i, t in sent]


def test_a_jittered_feed_at_the_rate_passes_undelayed_with_a_burst_tolerance() -> None:
    rng = random.Random(4)
    arrivals = [k * INTERVAL + rng.uniform(-0.3, 0.3) * INTERVAL for k in range(1, 41)]
    arrivals.sort()
    tolerant = _run(arrivals, burst=2)
    assert [i for i, _ in tolerant] == list(range(40))  # none held back and replaced
    assert max(_delays(arrivals, tolerant)) < 1e-6  # virtual time: no lag at all
    strict = _run(arrivals, burst=0)
    # strict spacing: a state that comes early waits for the interval, and states get dropped
    assert len(strict) < 40 or max(_delays(arrivals, strict)) > 0.3 * INTERVAL


@pytest.mark.parametrize("burst", [0, 2])
def test_a_flood_is_cut_to_the_rate_and_the_newest_state_still_arrives(burst: int) -> None:
    arrivals = [k * 0.004 for k in range(200)]  # 250 states/s for 0.8 s
    sent = _run(arrivals, burst=burst)
    times = [t for _, t in sent]
    # GCRA bound: in any span of length L at most 1 + burst + L / interval states
    for a in range(len(times)):
        for b in range(a, len(times)):
            assert b - a + 1 <= 1 + burst + (times[b] - times[a]) / INTERVAL + 1e-6
    assert sent[-1][0] == 199  # the newest state is never lost
    assert len(sent) >= 0.8 / INTERVAL * 0.8  # and the limit is not stricter than the rate
    # after the first 1 + burst, states are evenly spaced at the interval
    gaps = [b - a for a, b in zip(times[burst + 1 :], times[burst + 2 :])]
    assert min(gaps) >= INTERVAL * 0.9
