"""SSE over real HTTP: ids, event names, retry, keep-alive, symbol filter, coalescing, and
Last-Event-ID resume with no gap and no duplicate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest

import api.sse
from tests.api.conftest import AUTH, KEY
from tickcast import metrics
from tickcast.bus import Event

T0 = 1_763_683_200_000


class Reader(threading.Thread):
    """Reads one SSE response in a thread; `messages` are dicts of the fields of each block."""

    def __init__(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.params, self.headers = url, params or {}, headers if headers is not None else dict(AUTH)
        self.messages: list[dict[str, Any]] = []
        self.status: int | None = None
        self.connected = threading.Event()
        self._stop_flag = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10.0)) as client,
            client.stream("GET", self.url, params=self.params, headers=self.headers) as response,
        ):
            self.status = response.status_code
            if response.status_code != 200:
                self.connected.set()
                return
            block: dict[str, Any] = {}
            for line in response.iter_lines():
                if self._stop_flag.is_set():
                    return
                if line == "":
                    if block:
                        with self._lock:
                            self.messages.append(block)
                        self.connected.set()
                    block = {}
                elif line.startswith(":"):
                    block.setdefault("comments", []).append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    block[name] = value[1:] if value.startswith(" ") else value

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(timeout=5)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if "data" in m and (name is None or m.get("event") == name)]

    def wait(self, predicate: Callable[[Reader], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {self.messages}")
            time.sleep(0.01)


@contextmanager
def reading(server, path: str, **kw: Any) -> Iterator[Reader]:
    reader = Reader(server.base + path, **kw)
    reader.start()
    assert reader.connected.wait(5), "stream did not open"
    try:
        yield reader
    finally:
        reader.stop()


def publish(server, stream: str, data: dict[str, Any], symbol: str | None = None, *, store: bool = True) -> Event:
    """What the flow's EventSink does: store in live_events, then publish."""
    event = Event(stream, server.ctx.id_clock.next(), data, symbol, T0)
    if store:
        server.ctx.store.insert_rows("live_events", [event.row()])
    server.ctx.bus.publish(event)
    return event


def data_of(msg: dict[str, Any]) -> Any:
    return orjson.loads(msg["data"])


def streaming(server, *symbols: str) -> None:
    """Make `symbols` known the way a new symbol becomes known live: the flow published about it."""
    for symbol in symbols:
        publish(server, "predictions", {"symbol": symbol, "primer": True}, symbol, store=False)


def test_events_have_ids_names_and_retry(server) -> None:
    with reading(server, "/stream/predictions") as r:
        assert r.messages[0]["retry"] == "3000"  # SSE_RETRY_MS
        sent = [publish(server, "predictions", {"symbol": "AAA", "prob": p}, "AAA") for p in (0.1, 0.2, 0.3)]
        publish(server, "events", {"kind": "other stream"})
        r.wait(lambda r: len(r.events()) >= 3)
        got = r.events()
    assert [m["id"] for m in got] == [str(e.id) for e in sent]
    assert {m["event"] for m in got} == {"predictions"}
    assert [data_of(m)["prob"] for m in got] == [0.1, 0.2, 0.3]


def test_symbol_filter(server) -> None:
    streaming(server, "AAA", "CCC")
    with reading(server, "/stream/predictions", params={"symbol": "AAA,CCC"}) as r:
        for sym in ("BBB", "AAA", "BBB", "CCC", "AAA"):
            publish(server, "predictions", {"symbol": sym}, sym, store=False)
        r.wait(lambda r: len(r.events()) >= 3)
        time.sleep(0.1)
        assert [data_of(m)["symbol"] for m in r.events()] == ["AAA", "CCC", "AAA"]


def test_keepalive_comments(server) -> None:
    with reading(server, "/stream/events") as r:
        r.wait(lambda r: sum("ping" in c for m in r.messages for c in m.get("comments", [])) >= 2, timeout=3)


def test_resume_after_disconnect_no_gap_no_duplicate(server) -> None:
    with reading(server, "/stream/events") as r:
        first = [publish(server, "events", {"n": i}) for i in range(5)]
        r.wait(lambda r: len(r.events()) == 5)
        seen = r.events()[:3]  # the client processed three, then the connection dropped
    last_id = seen[-1]["id"]
    missed = first[3:] + [publish(server, "events", {"n": i}) for i in range(5, 9)]
    with reading(server, "/stream/events", headers={**AUTH, "Last-Event-ID": last_id}) as r:
        r.wait(lambda r: len(r.events()) >= len(missed))
        live = publish(server, "events", {"n": 9})
        r.wait(lambda r: len(r.events()) >= len(missed) + 1)
        time.sleep(0.1)
        got = r.events()
    assert [m["id"] for m in got] == [str(e.id) for e in [*missed, live]]
    assert [data_of(m)["n"] for m in got] == list(range(3, 10))


def test_events_during_resume_are_sent_once(server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscribe first, then replay: an event stored just before the replay query is in both the
    replay and the live queue (sent once); one stored just after the query is only in the queue
    (not lost)."""
    before = publish(server, "events", {"n": "before"})
    real_replay = api.sse.replay
    racing: list[Event] = []

    async def replay_with_race(*args: Any, **kw: Any) -> Any:
        racing.append(publish(server, "events", {"n": "racing"}))
        result = await real_replay(*args, **kw)
        racing.append(publish(server, "events", {"n": "late"}))
        return result

    monkeypatch.setattr(api.sse, "replay", replay_with_race)
    with reading(server, "/stream/events", params={"last_event_id": str(before.id - 1)}) as r:
        r.wait(lambda r: len(r.events()) >= 3)
        after = publish(server, "events", {"n": "after"})
        r.wait(lambda r: any(m["id"] == str(after.id) for m in r.events()))
        time.sleep(0.1)
        got = r.events()
    assert [data_of(m)["n"] for m in got] == ["before", "racing", "late", "after"]
    assert [m["id"] for m in got] == [str(e.id) for e in [before, *racing, after]]


def test_resume_reads_events_published_before_they_are_stored(server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded mode publishes before `live_events` has the event (the bus holds it until
    stored). A resume gets every missed event exactly once, in order, whether it is still
    unstored, gets stored while the replay runs, or is published during the replay."""
    bus, store = server.ctx.bus, server.ctx.store

    def publish_first(n: int) -> Event:
        event = Event("events", server.ctx.id_clock.next(), {"n": n}, None, T0)
        bus.publish_unstored([event])
        return event

    def store_it(event: Event) -> None:
        store.insert_rows("live_events", [event.row()])
        bus.mark_stored([event])

    seen = publish(server, "events", {"n": 0})
    stored_before = publish_first(1)
    store_it(stored_before)
    never_stored = publish_first(2)
    stored_during = publish_first(3)
    during: list[Event] = []
    real_named = store.named

    def named_with_race(name: str, params: dict[str, Any]) -> Any:
        if name == "live_events_after":  # after the bus was read, before the store is
            store_it(stored_during)
            during.append(publish_first(4))
        return real_named(name, params)

    monkeypatch.setattr(store, "named", named_with_race)
    with reading(server, "/stream/events", headers={**AUTH, "Last-Event-ID": str(seen.id)}) as r:
        r.wait(lambda r: len(r.events()) >= 4)
        after = publish_first(5)
        r.wait(lambda r: any(m["id"] == str(after.id) for m in r.events()))
        time.sleep(0.1)
        got = r.events()
    assert [data_of(m)["n"] for m in got] == [1, 2, 3, 4, 5]
    assert [m["id"] for m in got] == [str(e.id) for e in [stored_before, never_stored, stored_during, *during, after]]
    bus.mark_stored([never_stored, *during, after])


def test_resume_is_bounded_and_says_so(server) -> None:
    base = publish(server, "calibration", {"n": -1})
    rows = [Event("calibration", server.ctx.id_clock.next(), {"n": i}, None, T0) for i in range(60)]
    server.ctx.store.insert_rows("live_events", [e.row() for e in rows])
    with reading(server, "/stream/calibration", headers={**AUTH, "Last-Event-ID": str(base.id)}) as r:
        r.wait(lambda r: len(r.events("resync")) == 1)
        replayed = r.events("calibration")
    assert [data_of(m)["n"] for m in replayed] == list(range(50))  # SSE_RESUME_MAX_EVENTS = 50
    resync = r.events("resync")[0]
    assert data_of(resync)["reason"] == "too_many_missed" and "SSE_RESUME_MAX_EVENTS" in data_of(resync)["message"]
    assert resync["id"] == str(rows[49].id) == str(data_of(resync)["restart_from"])  # the client resumes from there


def test_sentiment_coalescing_keeps_bars_and_latest(server) -> None:
    burst = server.ctx.settings.SSE_MAX_BURST
    streaming(server, "COAL")
    with reading(server, "/stream/sentiment", params={"symbol": "COAL"}) as r:
        ticks = []
        for i in range(20):
            ticks.append(publish(server, "sentiment", {"kind": "tick", "symbol": "COAL", "i": i}, "COAL", store=False))
            if i == 10:
                bar = publish(
                    server, "sentiment", {"kind": "bar", "symbol": "COAL", "bar_end": T0}, "COAL", store=False
                )
        r.wait(lambda r: any(data_of(m).get("i") == 19 for m in r.events()), timeout=3)
        time.sleep(0.4)  # nothing else may follow
        got = [data_of(m) for m in r.events()]
    # 20 states within well under 1/5 s: the first 1 + SSE_MAX_BURST go out at once, the last
    # after the interval, the ones in between are dropped; the bar close is never dropped.
    first = list(range(burst + 1))
    assert [d.get("i") for d in got if d["kind"] == "tick"] == [*first, 19]
    assert [d for d in got if d["kind"] == "bar"] == [bar.data]
    assert [m["id"] for m in r.events()] == [*(str(ticks[i].id) for i in first), str(bar.id), str(ticks[19].id)]


def test_held_state_older_than_a_sent_event_goes_without_id(server) -> None:
    burst = server.ctx.settings.SSE_MAX_BURST
    with reading(server, "/stream/sentiment") as r:
        sent_a = [
            publish(server, "sentiment", {"kind": "tick", "s": f"a{i}"}, "HELDA", store=False) for i in range(burst + 1)
        ]
        held = publish(server, "sentiment", {"kind": "tick", "s": "held"}, "HELDA", store=False)
        b1 = publish(server, "sentiment", {"kind": "tick", "s": "b1"}, "HELDB", store=False)  # sent now
        r.wait(lambda r: len(r.events()) >= burst + 3, timeout=3)
        got = r.events()
    assert [data_of(m)["s"] for m in got] == [*(e.data["s"] for e in sent_a), "b1", "held"]
    # held.id < b1.id: no id line, so the client's Last-Event-ID stays at b1
    assert [m.get("id") for m in got] == [*(str(e.id) for e in sent_a), str(b1.id), None]
    assert held.id < b1.id


def test_sentiment_windows_filter(server) -> None:
    streaming(server, "WIN")
    with reading(server, "/stream/sentiment", params={"symbol": "WIN", "windows": "5m"}) as r:
        publish(
            server,
            "sentiment",
            {"kind": "bar", "sent_ema_5m": 0.1, "sent_ema_15m": 0.2, "sent_ema_60m": 0.3, "sent_score": 0.4},
            "WIN",
            store=False,
        )
        r.wait(lambda r: len(r.events()) == 1)
        assert data_of(r.events()[0]) == {"kind": "bar", "sent_ema_5m": 0.1, "sent_score": 0.4}


@pytest.mark.parametrize(
    ("path", "params", "headers", "status", "fragment"),
    [
        ("/stream/sentiment", {}, {}, 401, "X-API-Key"),
        ("/stream/events", {}, {"X-API-Key": "wrong"}, 403, "not one of API_KEYS"),
        ("/stream/events", {"api_key": "wrong"}, {}, 403, "not one of API_KEYS"),
        ("/stream/sentiment", {"windows": "7m"}, AUTH, 400, "subset of 5m,15m,60m"),
        ("/stream/predictions", {"symbol": "bad symbol"}, AUTH, 400, "'symbol'"),
        ("/stream/events", {}, {**AUTH, "Last-Event-ID": "abc"}, 400, "Last-Event-ID"),
    ],
)
def test_stream_refusals_are_json(server, path: str, params: dict, headers: dict, status: int, fragment: str) -> None:
    with httpx.Client(base_url=server.base, timeout=5) as c:
        r = c.get(path, params=params, headers=headers)
    assert r.status_code == status and fragment in r.json()["error"]


def test_query_key_and_client_gauge(server) -> None:
    gauge = metrics.SENTIMENT_SSE_CLIENTS.labels("events")
    before = gauge._value.get()
    with reading(server, "/stream/events", params={"api_key": KEY}, headers={}) as r:
        assert r.status == 200
        assert gauge._value.get() == before + 1
    deadline = time.monotonic() + 5
    while gauge._value.get() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gauge._value.get() == before  # decremented on disconnect
