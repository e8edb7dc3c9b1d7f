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


async def _published_from_a_thread(bus, subs, events) -> list[list[int]]:  # noqa: ANN001
    """Publish `events` from another thread (as the flow does); the ids each subscription got."""
    import asyncio
    import threading

    thread = threading.Thread(target=bus.publish_many, args=(events,))
    thread.start()
    thread.join()
    await asyncio.sleep(0.05)
    return [[s.queue.get_nowait().id for _ in range(s.queue.qsize())] for s in subs]


def test_the_subscription_index_delivers_exactly_what_each_subscription_wants() -> None:
    import random

    from tests.conftest import run_coroutine
    from tickcast.bus import STREAMS, Event, LocalBus

    rng = random.Random(7)
    symbols = ["A", "B", "C", "D"]

    async def main() -> None:
        bus = LocalBus()
        subs = []
        for _ in range(30):
            streams = rng.sample(STREAMS, rng.randint(1, 3))
            chosen = None if rng.random() < 0.3 else rng.sample(symbols, rng.randint(1, 3))
            subs.append(bus.subscribe(streams, chosen))
        gone = subs.pop(3)
        bus.unsubscribe(gone)
        events = [Event(rng.choice(STREAMS), i, {}, rng.choice([*symbols, None])) for i in range(1, 400)]
        got = await _published_from_a_thread(bus, subs, events)
        # the oracle: Subscription.wants, asked for every (subscription, event) pair
        assert got == [[e.id for e in events if s.wants(e)] for s in subs]
        assert gone.queue.qsize() == 0
        assert bus.subscriber_count == len(subs)
        assert bus.latest("sentiment", "A") == next(
            e for e in reversed(events) if e.stream == "sentiment" and e.symbol == "A"
        )

    run_coroutine(main())


def test_unstored_events_are_readable_until_marked_stored() -> None:
    from tickcast.bus import Event, LocalBus

    bus = LocalBus()
    events = [
        Event("sentiment", 10, {}, "A"),
        Event("sentiment", 11, {}, "B"),
        Event("predictions", 12, {}, "A"),
        Event("sentiment", 13, {}, None),
        Event("sentiment", 14, {}, "A"),
    ]
    bus.publish_unstored(events)  # no subscriber: still held for a resume
    assert [e.id for e in bus.unstored_after("sentiment", None, 0)] == [10, 11, 13, 14]
    assert [e.id for e in bus.unstored_after("sentiment", frozenset({"A"}), 10)] == [13, 14]
    bus.mark_stored(events[:2])
    assert [e.id for e in bus.unstored_after("sentiment", None, 0)] == [13, 14]
    bus.mark_stored(events)
    assert bus.unstored_after("sentiment", None, 0) == [] and bus.unstored_after("predictions", None, 0) == []
