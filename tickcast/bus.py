"""The live bus: fan-out of flow events to SSE clients.

Streams: `sentiment` (latest per symbol after accepted ticks and at bar close),
`predictions`, `calibration` (window evaluations), `events` (drift, recommendations,
jobs, model switches). Every event gets a process-monotonic id; the flow also
stores each event in `live_events`, so an SSE client can resume after
`Last-Event-ID` from ClickHouse.

Two implementations share `EventBus`: `LocalBus` (embedded mode, one process)
and, in distributed mode, `LocalBus` fed by a Kafka consumer of the flow's
output topics (see `dataflows.kafka_io`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

STREAMS: tuple[str, ...] = ("sentiment", "predictions", "calibration", "events")


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

    return pa.table({
        "stream": [e.stream for e in events],
        "id": pa.array([e.id for e in events], pa.uint64()),
        "symbol": [e.symbol or "" for e in events],
        "ts": pa.array([e.ts for e in events], pa.int64()),
        "data": [orjson.dumps(e.data).decode() for e in events],
    })


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


class EventBus(Protocol):
    def publish(self, event: Event) -> None: ...

    def subscribe(self, streams: Iterable[str], symbols: Iterable[str] | None = None) -> Subscription: ...

    def latest(self, stream: str, symbol: str) -> Event | None: ...


@dataclass(eq=False)
class Subscription:
    """An asyncio queue of events for one SSE client; a slow client drops oldest first."""

    streams: frozenset[str]
    symbols: frozenset[str] | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(maxsize=10_000))
    dropped: int = 0

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
    """In-process bus; publish() is thread-safe (the flow runs in another thread)."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._latest: dict[tuple[str, str], Event] = {}
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        with self._lock:
            if event.symbol:
                self._latest[(event.stream, event.symbol)] = event
            subs = [s for s in self._subs if s.wants(event)]
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, event)
            except RuntimeError:  # loop closed: the client is gone
                self.unsubscribe(sub)

    def subscribe(self, streams: Iterable[str], symbols: Iterable[str] | None = None) -> Subscription:
        sub = Subscription(
            frozenset(streams),
            frozenset(symbols) if symbols is not None else None,
            asyncio.get_running_loop(),
        )
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def latest(self, stream: str, symbol: str) -> Event | None:
        with self._lock:
            return self._latest.get((stream, symbol))

    def symbols(self, stream: str) -> list[str]:
        with self._lock:
            return sorted(sym for (s, sym) in self._latest if s == stream)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)
