"""Server-sent event streams over the live bus, with gap-free `Last-Event-ID` resume.

Each message: `id:` (the bus id, monotonic), `event:` (the stream name), `data:`
(JSON). The first message carries the `retry:` hint; sse-starlette sends a
keep-alive comment every SSE_KEEPALIVE_SECONDS.

Resume order matters: subscribe to the bus first, then replay the events with
`id > Last-Event-ID` — those published but not yet stored (held by the in-process bus),
then those in `live_events` — then go live skipping ids <= the last replayed one. An
event published during the replay is then either in the replay or in the queue, never
in neither (the bus drops an unstored event only after it is stored; a store-first
publisher stores before publishing); the skip drops the ones that are in both.

A `Last-Event-ID` the server does not know — above every id it has given out or stored
(another deployment's, a wiped store's, a forged one) — is answered with a `resync` event
instead of silence: its `id:` is the server's newest id (an EventSource takes it as its new
Last-Event-ID), its data says which id was unknown and where the stream restarts, and the
stream goes on from there. The same event name marks a resume that was cut short
(`SSE_RESUME_MAX_EVENTS`). A client reloads its state from the history endpoints on
`resync`; api/static/live.js does.

`SSE_MAX_STREAM_SECONDS` > 0 ends each stream after that long; clients reconnect and resume
with their Last-Event-ID (no gap), which spreads them over replicas after a scale-out.

Coalescing (`/stream/sentiment`): at most `rate_hz` state messages per second per
symbol in the long run, with `SSE_MAX_BURST` extra allowed back to back; a newer state
replaces a held one (the intermediate one is dropped), bar-close
events (`"kind": "bar"`) are never dropped or delayed. A held state is sent after
newer events of other symbols, so its id can be lower than one already sent: it
goes out without an `id:` line, leaving the client's Last-Event-ID where it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.context import AppContext, blocking
from tickcast import metrics
from tickcast.bus import Event

log = logging.getLogger(__name__)
Transform = Callable[[dict[str, Any]], dict[str, Any]]


def _message(event: Event, transform: Transform | None, with_id: bool = True) -> ServerSentEvent:
    data = transform(event.data) if transform is not None else event.data
    return ServerSentEvent(
        data=orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        event=event.stream,
        id=str(event.id) if with_id else None,
    )


async def replay(
    ctx: AppContext, stream: str, symbols: frozenset[str] | None, after: int, limit: int
) -> tuple[list[Event], bool]:
    """Events of `stream` with id > after, oldest first; (events, truncated).

    The ones the flow has published but not stored yet are read from the bus *before* the
    store is queried: an event leaves the bus's unstored set only once it is in
    `live_events`, so it is in one of the two reads (or both: merged by id)."""
    pending = ctx.bus.unstored_after(stream, symbols, after)
    rows = await blocking(
        ctx.store.named,
        "live_events_after",
        {"stream": stream, "after": after, "symbols": sorted(symbols or ()), "limit": limit + 1},
    )
    stored = [Event(stream, int(r["id"]), orjson.loads(r["data"]), r["symbol"] or None, int(r["ts_ms"])) for r in rows]
    if pending:
        merged = {e.id: e for e in stored}
        merged.update((e.id, e) for e in pending)
        stored = sorted(merged.values(), key=lambda e: e.id)
    return stored[:limit], len(stored) > limit


async def newest_if_ahead(ctx: AppContext, stream: str, last_id: int) -> int | None:
    """None when `last_id` is an id this server has given out or stored; else the newest id it
    knows for `stream` (its id clock, the unstored events on the bus, the stored ones). The
    store is asked only when the id clock is behind `last_id` (after a restart, or a replica
    that has not seen an event yet)."""
    newest = ctx.id_clock.current()
    if last_id <= newest:
        return None
    newest = max([newest, *(e.id for e in ctx.bus.unstored_after(stream, None, newest))])
    rows = await blocking(ctx.store.named, "live_events_newest_id", {"stream": stream})
    newest = max(newest, int(rows[0]["newest"] or 0) if rows else 0)
    return None if last_id <= newest else newest


def resync_event(reason: str, message: str, restart_from: int, **extra: Any) -> ServerSentEvent:
    """A `resync` event; its id moves the client's Last-Event-ID to where the stream restarts."""
    data = {"reason": reason, "message": message, "restart_from": restart_from, **extra}
    return ServerSentEvent(data=orjson.dumps(data).decode(), event="resync", id=str(restart_from))


async def event_source(
    ctx: AppContext,
    stream: str,
    symbols: frozenset[str] | None,
    last_id: int | None,
    *,
    rate_hz: float | None = None,
    transform: Transform | None = None,
    unknown_id: int | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """`unknown_id`: the client's Last-Event-ID was ahead of the server; `last_id` is then the
    server's newest id, announced first in a `resync` event."""
    settings = ctx.settings
    sub = ctx.bus.subscribe([stream], symbols)  # before the replay query: see the module docstring
    gauge = metrics.SENTIMENT_SSE_CLIENTS.labels(stream)
    gauge.inc()
    try:
        yield ServerSentEvent(comment=f"tickcast {stream} stream", retry=settings.SSE_RETRY_MS)
        cursor = 0
        if last_id is not None and unknown_id is not None:
            yield resync_event(
                "unknown_last_event_id",
                f"Last-Event-ID {unknown_id} is ahead of this server's newest event {last_id} (another "
                "deployment's id, or a store that was reset); the stream restarts after the newest event: "
                "reload state from the history endpoints",
                last_id,
                last_event_id=unknown_id,
            )
        if last_id is not None:
            cursor = last_id
            events, truncated = await replay(ctx, stream, symbols, last_id, settings.SSE_RESUME_MAX_EVENTS)
            for event in events:
                yield _message(event, transform)
                cursor = event.id
            if truncated:
                yield resync_event(
                    "too_many_missed",
                    f"more than {settings.SSE_RESUME_MAX_EVENTS} events were missed (SSE_RESUME_MAX_EVENTS); "
                    "reload state from the history endpoints",
                    cursor,
                    replayed_up_to=cursor,
                )
        live = (
            _live(sub.queue, cursor)
            if rate_hz is None
            else _coalesced(sub.queue, cursor, 1.0 / rate_hz, settings.SSE_MAX_BURST)
        )
        async for event, with_id in _until(live, settings.SSE_MAX_STREAM_SECONDS):
            yield _message(event, transform, with_id)
    finally:
        ctx.bus.unsubscribe(sub)
        gauge.dec()


async def _until(events: AsyncIterator[tuple[Event, bool]], seconds: float) -> AsyncIterator[tuple[Event, bool]]:
    """`events` until `seconds` have passed (0: for ever)."""
    if seconds <= 0:
        async for item in events:
            yield item
        return
    deadline = asyncio.get_running_loop().time() + seconds
    iterator = aiter(events)
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        try:
            item = await asyncio.wait_for(anext(iterator), remaining)
        except (TimeoutError, StopAsyncIteration):
            return
        yield item


async def _live(queue: asyncio.Queue[Event], cursor: int) -> AsyncIterator[tuple[Event, bool]]:
    while True:
        event = await queue.get()
        if event.id > cursor:
            cursor = event.id
            yield event, True


async def _coalesced(
    queue: asyncio.Queue[Event], cursor: int, interval: float, burst: int
) -> AsyncIterator[tuple[Event, bool]]:
    """At most one state per `interval` per symbol in the long run (GCRA: a state goes out
    when its symbol's theoretical send time is at most `burst` intervals ahead of now).

    The tolerance is what lets a feed at the rate through undelayed: ticks that come every
    100 ms but jittered by the path would otherwise be held for a reflected random walk of
    the jitter, up to a whole interval. A flood is still cut to the rate, evenly spaced
    after at most `burst` extra states."""
    loop = asyncio.get_running_loop()
    tolerance = burst * interval
    held: dict[str | None, Event] = {}
    tat: dict[str | None, float] = {}  # per symbol: theoretical time of the next send

    def due(symbol: str | None) -> float:
        # less a nanosecond: a send time that float rounding puts a hair after `now` is due now
        # (else a clock that only moves in whole ticks, like the tests' virtual one, spins)
        return tat.get(symbol, 0.0) - tolerance - 1e-9

    def take(symbol: str | None, now: float) -> None:
        tat[symbol] = max(tat.get(symbol, now), now) + interval

    sent = cursor
    while True:
        now = loop.time()
        for symbol in sorted((s for s in held if due(s) <= now), key=lambda s: held[s].id):
            event = held.pop(symbol)
            take(symbol, now)
            yield event, event.id > sent
            sent = max(sent, event.id)
        timeout = min(due(s) for s in held) - now if held else None
        try:
            event = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            continue
        if event.id <= cursor:
            continue  # already replayed
        now = loop.time()
        if event.data.get("kind") == "bar":
            yield event, event.id > sent
            sent = max(sent, event.id)
        elif event.symbol not in held and due(event.symbol) <= now:
            take(event.symbol, now)
            yield event, event.id > sent
            sent = max(sent, event.id)
        else:
            held[event.symbol] = event  # replaces (drops) an older held state


def sse_response(
    ctx: AppContext,
    stream: str,
    symbols: frozenset[str] | None,
    last_id: int | None,
    *,
    rate_hz: float | None = None,
    transform: Transform | None = None,
    unknown_id: int | None = None,
) -> EventSourceResponse:
    return EventSourceResponse(
        event_source(ctx, stream, symbols, last_id, rate_hz=rate_hz, transform=transform, unknown_id=unknown_id),
        ping=ctx.settings.SSE_KEEPALIVE_SECONDS,
        send_timeout=30,  # a client that stops reading is dropped instead of holding memory
        headers={"Cache-Control": "no-cache"},
    )
