"""The live bus: fan-out of flow events to SSE clients.

Streams: `sentiment` (latest per symbol after accepted ticks and at bar close),
`predictions`, `calibration` (window evaluations), `events` (drift, recommendations,
jobs, model switches). Every event gets a process-monotonic id; the flow also
stores each event in `live_events`, so an SSE client can resume after
`Last-Event-ID` from ClickHouse.

Protocols: `EventPublisher` (what the flow's event sink and the job center call) and
`EventBus` (what the API calls: subscriptions, latest, unstored events). `LocalBus`
implements both (embedded mode, and in distributed mode each API replica's bus, fed by a
Kafka consumer of the flow's output topics); `dataflows.kafka.fanout.KafkaEventPublisher`
is the distributed flow's publisher (one output topic per stream).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

STREAMS: tuple[str, ...] = ("sentiment", "predictions", "calibration", "events", "trading")


@dataclass(frozen=True, slots=True)
class Event:
    stream: str
    id: int
    data: dict[str, Any]
    symbol: str | None = None
    ts: int = 0  # event time, epoch ms

    def row(self) -> dict[str, Any]:
        import orjson

        return {
            "stream": self.stream,
            "id": self.id,
            "symbol": self.symbol or "",
            "ts": self.ts,
            "data": orjson.dumps(self.data).decode(),
        }


def events_table(events: list[Event]) -> Any:
    """`live_events` rows of many events as one Arrow table (what `Event.row` gives, per column)."""
    import orjson
    import pyarrow as pa

    return pa.table(
        {
            "stream": [e.stream for e in events],
            "id": pa.array([e.id for e in events], pa.uint64()),
            "symbol": [e.symbol or "" for e in events],
            "ts": pa.array([e.ts for e in events], pa.int64()),
            "data": [orjson.dumps(e.data).decode() for e in events],
        }
    )


class IdClock:
    """Strictly increasing ids: (wall-clock ms << 12) | counter, so ids also sort by time."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, int(time.time() * 1000) << 12)
            return self._last

    def take(self, n: int) -> range:
        """n consecutive ids, as n calls of `next` at this instant would give."""
        with self._lock:
            first = max(self._last + 1, int(time.time() * 1000) << 12)
            self._last = first + n - 1
            return range(first, first + n)

    def observe(self, event_id: int) -> None:
        with self._lock:
            self._last = max(self._last, event_id)

    def current(self) -> int:
        """The newest id given out or observed (0 before the first)."""
        with self._lock:
            return self._last


class EventPublisher(Protocol):
    """What the flow's event sink needs (`dataflows.sinks.EventSink`); also the job center's.

    `holds_unstored` is the one capability that differs, declared by each implementation:
    True (`LocalBus`: the SSE clients are in this process and resume from it) — the sink
    publishes with `publish_unstored` before the events are stored and calls `mark_stored`
    after; False (the Kafka fan-out: API replicas resume from ClickHouse only) — the sink
    stores each batch first, then calls `publish_many`.
    """

    @property
    def holds_unstored(self) -> bool: ...

    def publish(self, event: Event) -> None: ...

    def publish_many(self, events: Iterable[Event]) -> None: ...

    def publish_unstored(self, events: list[Event]) -> None: ...

    def mark_stored(self, events: Iterable[Event]) -> None: ...


class EventBus(EventPublisher, Protocol):
    """What the API needs of the bus (`api.context.AppContext.bus`): SSE subscriptions, the
    latest event per symbol, the live symbols, and the events published but not stored yet
    (a resume reads them, see api/sse.py)."""

    def subscribe(self, streams: Iterable[str], symbols: Iterable[str] | None = None) -> Subscription: ...

    def unsubscribe(self, sub: Subscription) -> None: ...

    def latest(self, stream: str, symbol: str) -> Event | None: ...

    def symbols(self, stream: str) -> list[str]: ...

    def unstored_after(self, stream: str, symbols: frozenset[str] | None, after: int) -> list[Event]: ...

    @property
    def subscriber_count(self) -> int: ...


@dataclass(eq=False)
class Subscription:
    """An asyncio queue of events for one SSE client; a slow client drops oldest first."""

    streams: frozenset[str]
    symbols: frozenset[str] | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(maxsize=10_000))
    dropped: int = 0

    def keys(self) -> list[tuple[str, str | None]]:
        """The (stream, symbol) index entries of this subscription; symbol None: every symbol."""
        if self.symbols is None:
            return [(stream, None) for stream in self.streams]
        return [(stream, symbol) for stream in self.streams for symbol in self.symbols]

    def wants(self, event: Event) -> bool:
        if event.stream not in self.streams:
            return False
        return self.symbols is None or event.symbol is None or event.symbol in self.symbols

    def offer(self, event: Event) -> None:
        # Runs on the subscriber's event loop.
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class LocalBus:
    """In-process bus; publishing is thread-safe (the flow runs in another thread).

    Subscriptions are indexed by (stream, symbol), so a publish touches only the clients
    that want the event, and a batch of events reaches an event loop in one wake-up.

    `publish_unstored` (embedded mode: the flow and the SSE clients share this process)
    publishes events before they are in `live_events` and keeps them here until
    `mark_stored`; `unstored_after` lets a resuming client read them, so the stored
    events and these together always hold every event published (see api/sse.py).
    """

    holds_unstored = True  # EventPublisher: the SSE clients are in this process

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str | None], set[Subscription]] = {}
        self._latest: dict[tuple[str, str], Event] = {}
        self._unstored: dict[int, Event] = {}
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        self.publish_many([event])

    def publish_many(self, events: Iterable[Event]) -> None:
        self._deliver(self._route(events))

    def publish_unstored(self, events: list[Event]) -> None:
        with self._lock:
            self._unstored.update((e.id, e) for e in events)
        self.publish_many(events)  # after: an event is never sent before a resume could find it

    def mark_stored(self, events: Iterable[Event]) -> None:
        with self._lock:
            for event in events:
                self._unstored.pop(event.id, None)

    def unstored_after(self, stream: str, symbols: frozenset[str] | None, after: int) -> list[Event]:
        with self._lock:
            pending = list(self._unstored.values())
        return sorted(
            (
                e
                for e in pending
                if e.stream == stream and e.id > after and (symbols is None or e.symbol is None or e.symbol in symbols)
            ),
            key=lambda e: e.id,
        )

    def _route(self, events: Iterable[Event]) -> dict[asyncio.AbstractEventLoop, list[tuple[Subscription, Event]]]:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, Event]]] = {}
        with self._lock:
            for event in events:
                if event.symbol:
                    self._latest[(event.stream, event.symbol)] = event
                for sub in self._wanting(event):
                    by_loop.setdefault(sub.loop, []).append((sub, event))
        return by_loop

    def _wanting(self, event: Event) -> list[Subscription]:
        if event.symbol is None:  # not about one symbol: every subscriber of the stream
            return list({s: None for (stream, _), subs in self._subs.items() if stream == event.stream for s in subs})
        return [*self._subs.get((event.stream, None), ()), *self._subs.get((event.stream, event.symbol), ())]

    def _deliver(self, by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, Event]]]) -> None:
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_offer_all, pairs)
            except RuntimeError:  # loop closed: its clients are gone
                for sub in {sub for sub, _ in pairs}:
                    self.unsubscribe(sub)

    def subscribe(self, streams: Iterable[str], symbols: Iterable[str] | None = None) -> Subscription:
        sub = Subscription(
            frozenset(streams),
            frozenset(symbols) if symbols is not None else None,
            asyncio.get_running_loop(),
        )
        with self._lock:
            for key in sub.keys():
                self._subs.setdefault(key, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            for key in sub.keys():
                subs = self._subs.get(key)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[key]

    def latest(self, stream: str, symbol: str) -> Event | None:
        with self._lock:
            return self._latest.get((stream, symbol))

    def symbols(self, stream: str) -> list[str]:
        with self._lock:
            return sorted(sym for (s, sym) in self._latest if s == stream)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len({s for subs in self._subs.values() for s in subs})


def _offer_all(pairs: list[tuple[Subscription, Event]]) -> None:
    for sub, event in pairs:  # runs on the subscribers' event loop
        sub.offer(event)
