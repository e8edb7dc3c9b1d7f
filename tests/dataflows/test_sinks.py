"""The background-writing sinks: rows are in ClickHouse when the epoch's snapshot returns,
and a failed write stops the flow (at the next hand-over or snapshot) instead of vanishing."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from dataflows.items import Events, LiveEvent
from dataflows.sinks import EventSink, StoreSink
from tickcast.store import Store

ROW = {
    "symbol": "XRPUSDT",
    "interval": "1m",
    "open_time": 1_763_683_200_000,
    "close_time": 1_763_683_260_000,
    "open": 1.0,
    "high": 1.1,
    "low": 0.9,
    "close": 1.0,
    "volume": 1.0,
    "ingest_ts": 1_763_683_260_100,
}


def test_snapshot_returns_only_after_the_rows_are_written(store: Store) -> None:
    part = StoreSink(lambda: store).build_part("store", "store", None)
    rows = [
        {**ROW, "open_time": ROW["open_time"] + i * 60_000, "close_time": ROW["close_time"] + i * 60_000}
        for i in range(500)
    ]
    part.write_batch([("candles", [rows[:250]]), ("candles", [rows[250:]])])
    part.snapshot()
    assert store.count("candles") == 500


def test_a_failed_write_surfaces_at_the_snapshot_and_stops_further_writes(store: Store) -> None:
    part = StoreSink(lambda: store, retries=0).build_part("store", "store", None)
    part.write_batch([("candles", [[{"symbol": "XRPUSDT"}]])])  # a real failure: required columns are missing
    with pytest.raises(RuntimeError, match="background ClickHouse write failed"):
        part.snapshot()
    with pytest.raises(RuntimeError):
        part.write_batch([("candles", [[ROW]])])
    assert store.count("candles") == 0


def test_dict_rows_and_arrow_pieces_land_in_one_table_with_the_same_values(store: Store) -> None:
    import pyarrow as pa

    part = StoreSink(lambda: store).build_part("store", "store", None)
    later = {**ROW, "open_time": ROW["open_time"] + 60_000, "close_time": ROW["close_time"] + 60_000, "close": 1.05}
    # an Arrow piece as the columnar paths build it: epoch-ms ints, an extra column, any column order
    columnar = pa.table({"extra": [7], **{k: [v] for k, v in reversed(later.items())}})
    part.write_batch([("candles", [[ROW], columnar])])
    part.snapshot()
    got = store.rows(
        "SELECT toUnixTimestamp64Milli(open_time) AS open_time, close FROM {db}.candles FINAL ORDER BY open_time"
    )
    assert got == [{"open_time": ROW["open_time"], "close": 1.0}, {"open_time": later["open_time"], "close": 1.05}]


def test_events_are_stored_as_their_rows_then_published_in_order(store: Store) -> None:
    from tickcast.bus import Event, IdClock

    published: list[Event] = []

    class Bus:  # a recording publisher that holds nothing unstored (as the Kafka fan-out): store, then publish
        holds_unstored = False

        def publish(self, event: Event) -> None:  # only the order is under test
            published.append(event)

        def publish_many(self, events: Iterable[Event]) -> None:
            published.extend(events)

    part = EventSink(Bus(), lambda: store, IdClock()).build_part("live", "live", None)
    batch = [
        ("sentiment", {"kind": "tick", "x": float("nan"), "n": 3}, "BTCUSDT", 1_763_683_200_123),
        ("events", {"kind": "model_switch", "to": "v2"}, None, 1_763_683_200_456),
    ]
    part.write_batch([Events(batch), Events(batch[:1])])
    part.snapshot()
    assert [(e.stream, e.symbol) for e in published] == [
        ("sentiment", "BTCUSDT"),
        ("events", None),
        ("sentiment", "BTCUSDT"),
    ]
    ids = [e.id for e in published]
    assert ids == sorted(ids) and len(set(ids)) == 3
    stored = store.rows(
        "SELECT stream, id, symbol, toUnixTimestamp64Milli(ts) AS ts, data FROM {db}.live_events ORDER BY id"
    )
    assert stored == [e.row() for e in published]  # the column-built rows are what Event.row() gives


def test_with_the_in_process_bus_events_are_published_at_once_and_held_until_stored(store: Store) -> None:
    import threading

    from tickcast.bus import IdClock, LocalBus

    bus = LocalBus()
    part = EventSink(bus, lambda: store, IdClock()).build_part("live", "live", None)
    release = threading.Event()
    real_insert = store.insert_pieces
    store.insert_pieces = lambda *a, **k: (release.wait(5), real_insert(*a, **k))  # type: ignore[method-assign]
    try:
        part.write_batch(
            [
                Events(
                    [
                        LiveEvent("sentiment", {"kind": "tick", "n": 1}, "BTCUSDT", 1_763_683_200_123),
                        LiveEvent("predictions", {"prob": 0.6}, "BTCUSDT", 1_763_683_200_456),
                    ]
                )
            ]
        )
        # published before the insert ran: the latest state is visible and a resume can read it
        assert bus.latest("sentiment", "BTCUSDT").data == {"kind": "tick", "n": 1}
        held = bus.unstored_after("sentiment", None, 0) + bus.unstored_after("predictions", None, 0)
        assert [e.stream for e in held] == ["sentiment", "predictions"]
        assert store.count("live_events") == 0
        release.set()
        part.snapshot()
    finally:
        store.insert_pieces = real_insert  # type: ignore[method-assign]
    stored = store.rows(
        "SELECT stream, id, symbol, toUnixTimestamp64Milli(ts) AS ts, data FROM {db}.live_events ORDER BY id"
    )
    assert stored == [e.row() for e in held]
    assert bus.unstored_after("sentiment", None, 0) == [] and bus.unstored_after("predictions", None, 0) == []


def test_table_writes_hold_off_while_the_live_flow_is_busy_but_not_forever() -> None:
    import threading
    import time

    from dataflows.sinks import LiveGate

    gate = LiveGate(quiet_s=0.05, max_wait_s=0.3)

    def waited() -> float:
        t = time.perf_counter()
        gate.wait()
        return time.perf_counter() - t

    assert waited() < 0.03  # never touched, nothing pending: no wait
    gate.touch()
    assert 0.03 <= waited() < 0.15  # until the flow was quiet for quiet_s
    gate.submitted()
    threading.Timer(0.1, gate.done, args=(1,)).start()
    assert 0.08 <= waited() < 0.25  # released when the event batch is done
    stop = threading.Event()

    def busy_flow() -> None:
        while not stop.is_set():
            gate.touch()
            time.sleep(0.005)

    threading.Thread(target=busy_flow, daemon=True).start()
    try:
        assert 0.28 <= waited() < 1.0  # a flow that never goes quiet: the writer goes on after max_wait_s
    finally:
        stop.set()
    gate.submitted()  # never done (a stuck event writer): likewise
    assert 0.28 <= waited() < 1.0


def test_a_failed_insert_is_retried_then_written_once(store: Store, monkeypatch) -> None:  # noqa: ANN001
    """A transient ClickHouse failure cannot be caused on demand in chdb, so the store's insert
    is made to fail twice (a stand-in for the fault); the retries then write the rows once."""
    from dataflows.sinks import write_with_retries
    from tickcast import metrics

    real_insert = store.insert_pieces
    calls = []

    def flaky(table: str, pieces: list) -> int:
        calls.append(table)
        if len(calls) <= 2:
            raise RuntimeError("connection reset")
        return real_insert(table, pieces)

    errors = metrics.STORE_WRITE_ERRORS.labels("candles")
    before = errors._value.get()  # noqa: SLF001
    monkeypatch.setattr(store, "insert_pieces", flaky)
    write_with_retries(store, "candles", [[ROW]], retries=3)
    assert len(calls) == 3 and errors._value.get() - before == 2  # noqa: SLF001
    assert store.count("candles") == 1


class _FlakyStore:
    """The real store, whose inserts fail while `down` is set — a stand-in for a store fault in a
    unit test (chdb cannot be made to fail on demand in-process; tests/faults fills a real disk)."""

    def __init__(self, store: Store) -> None:
        import threading

        self.store = store
        self.down = threading.Event()
        self.attempts = 0

    def insert_pieces(self, table: str, pieces: list) -> int:
        self.attempts += 1
        if self.down.is_set():
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return self.store.insert_pieces(table, pieces)


@pytest.fixture()
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataflows import sinks

    monkeypatch.setattr(sinks, "RETRY_FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(sinks, "RETRY_MAX_BACKOFF_S", 0.05)


def _candles(n: int, start: int = 0) -> list[dict]:
    return [
        {**ROW, "open_time": ROW["open_time"] + i * 60_000, "close_time": ROW["close_time"] + i * 60_000}
        for i in range(start, start + n)
    ]


def test_a_failing_store_is_retried_for_as_long_as_it_fails_and_holds_the_flow(store: Store, fast_backoff) -> None:  # noqa: ANN001
    import threading
    import time

    from dataflows.sinks import WriteMonitor

    flaky = _FlakyStore(store)
    flaky.down.set()
    monitor = WriteMonitor()
    entered: list[str] = []
    monitor.on_failing.append(entered.append)
    part = StoreSink(lambda: flaky, monitor=monitor).build_part("store", "store", None)  # type: ignore[arg-type,return-value]
    part.write_batch([("candles", [_candles(10)])])
    deadline = time.time() + 5
    while flaky.attempts < 20 and time.time() < deadline:  # far beyond the old limit of 3 retries
        time.sleep(0.01)
    assert flaky.attempts >= 20 and monitor.failing
    problem = monitor.problem()
    assert problem is not None and "inserts into candles failing since" in problem and "Connection refused" in problem
    assert len(entered) == 1  # entering the failing state is announced once

    handed_over = threading.Event()
    flow = threading.Thread(target=lambda: (part.write_batch([("candles", [_candles(5, 10)])]), handed_over.set()))
    flow.start()
    assert not handed_over.wait(0.3)  # the flow holds while the store fails: nothing queues behind
    flaky.down.clear()
    assert handed_over.wait(5)
    part.snapshot()
    assert store.count("candles") == 15 and not monitor.failing and monitor.problem() is None


def test_rows_the_store_can_never_take_are_not_retried(store: Store, fast_backoff) -> None:  # noqa: ANN001
    from dataflows.sinks import WriteMonitor, write_with_retries
    from tickcast.store import StoreDataError

    flaky = _FlakyStore(store)
    monitor = WriteMonitor()
    with pytest.raises(StoreDataError, match="required but has nulls"):
        write_with_retries(flaky, "candles", [[{"symbol": "XRPUSDT"}]], monitor=monitor)  # type: ignore[arg-type]
    assert flaky.attempts == 1 and not monitor.failing  # a bug in the rows, not a store fault


def test_close_never_raises_and_gives_up_when_the_stop_abandons_the_store(store: Store, fast_backoff) -> None:  # noqa: ANN001
    import threading

    from dataflows.sinks import WriteMonitor

    broken = StoreSink(lambda: store, retries=0).build_part("store", "store", None)
    broken.write_batch([("candles", [[{"symbol": "XRPUSDT"}]])])
    assert broken.writer.close() is False  # after a failed write: logged, not raised (Bytewax may be unwinding)

    flaky = _FlakyStore(store)
    flaky.down.set()
    monitor = WriteMonitor()
    part = StoreSink(lambda: flaky, monitor=monitor).build_part("store", "store", None)  # type: ignore[arg-type,return-value]
    part.write_batch([("candles", [_candles(3)])])
    result: list[bool] = []
    closer = threading.Thread(target=lambda: result.append(part.writer.close()))
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # close waits for the store...
    monitor.abandon()
    closer.join(5)
    assert result == [False]  # ...until the stop gives up on it
    assert store.count("candles") == 0
