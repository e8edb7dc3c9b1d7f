"""The embedded ingest buffer and stored acknowledgements (TICKCAST_INGEST_ACK=stored)."""

from __future__ import annotations

import asyncio
import queue
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from dataflows.sources import STOP
from tests.conftest import run_coroutine
from tickcast.acks import StoredAcks, record_key
from tickcast.app.embedded import EmbeddedSystem
from tickcast.inbox import IngestInbox, IngestRefused
from tickcast.records import Rejection, decode_record
from tickcast.settings import load_settings
from tickcast.store import Store

T = 1_763_683_200_000
TICK = {"symbol": "BTCUSDT", "ts": T, "score": 0.25, "provider": "newsapi", "ingest_ts": T + 5}
CANDLE = {
    "symbol": "BTCUSDT",
    "interval": "1m",
    "open_time": T,
    "close_time": T + 60_000,
    "open": 1.0,
    "high": 1.2,
    "low": 0.9,
    "close": 1.1,
    "volume": 3.0,
    "ingest_ts": T + 60_100,
}


def test_the_inbox_is_bounded_in_records_not_requests() -> None:
    inbox = IngestInbox(100)
    inbox.offer([("http", {}, 0)] * 60)
    with pytest.raises(IngestRefused, match="ingest buffer is full") as refused:
        inbox.offer([("http", {}, 0)] * 41)
    assert refused.value.reason == "buffer_full" and refused.value.retry_after_s > 0
    inbox.offer([("http", {}, 0)] * 40)  # exactly full
    inbox.offer([("http", {"_control": "x"}, 0)], force=True)  # admin control records always go in
    inbox.put(STOP)
    assert inbox.records == 101
    assert len(inbox.get_nowait()) == 60 and inbox.records == 41
    inbox.get_nowait(), inbox.get_nowait()
    assert inbox.get_nowait() is STOP and inbox.empty()
    with pytest.raises(queue.Empty):
        inbox.get_nowait()
    inbox.offer([("http", {}, 0)] * 500)  # larger than the bound: an empty inbox still takes it
    assert inbox.records == 500


def test_keys_agree_with_the_decoder_and_every_row_shape_resolves_them() -> None:
    kind, decoded = decode_record(TICK, source="api", now_ms=T, default_ingest="now")  # type: ignore[misc]
    assert record_key(TICK) == record_key(decoded) == ("tick", "BTCUSDT", decoded["id"])  # the default id
    acks = StoredAcks()
    ticks = [{**TICK, "id": f"t{i}"} for i in range(3)]
    receipt = acks.register([*ticks, CANDLE, {**CANDLE, "open_time": T + 60_000, "close_time": T + 120_000}])
    assert len(receipt.pending) == 5 and acks.waiting()
    acks.on_written("sentiment_ticks", [pa.table({"symbol": ["BTCUSDT"], "id": ["t0"], "extra": [1]})])  # Arrow
    acks.on_written("sentiment_ticks", [[{"symbol": "BTCUSDT", "id": "t1"}], [{"symbol": "ETHUSDT", "id": "t2"}]])
    assert ("tick", "BTCUSDT", "t2") in receipt.pending  # another symbol's t2 is not this one
    late = Rejection.for_record("sentiment", "late tick", {**ticks[2], "weight": 1.0})
    acks.on_written("rejected_records", [[late.row()]])  # refused by the flow: its row is in rejected_records
    ts_col = pa.array([T], pa.timestamp("ms", tz="UTC"))
    acks.on_written("candles", [pa.table({"symbol": ["BTCUSDT"], "interval": ["1m"], "open_time": ts_col})])
    assert receipt.pending == {("candle", "BTCUSDT", "1m", T + 60_000)} and not receipt.done
    acks.on_written("candles", [[{**CANDLE, "open_time": T + 60_000}]])
    assert receipt.done and not acks.waiting()
    # the same candle again is dropped by the flow (no row): its row is already stored, so it is done at once
    assert acks.register([{**CANDLE, "open_time": T + 60_000}]).done


def test_receipts_wake_the_event_loop_and_are_refused_when_the_store_fails() -> None:
    acks = StoredAcks()

    async def scenario() -> tuple[bool, bool, str | None, bool]:
        first = acks.register([{**TICK, "id": "a"}])
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: loop.run_in_executor(None, acks.on_written, "sentiment_ticks", [[first_row]]))
        stored = await first.wait(5)
        second = acks.register([{**TICK, "id": "b"}])
        loop.call_later(0.05, lambda: loop.run_in_executor(None, acks.refuse_all, "the store is failing: disk full"))
        refused = await second.wait(5)
        third = acks.register([{**TICK, "id": "c"}])
        timed_out = await third.wait(0.05)
        acks.forget(third)
        return stored, refused, second.refused, timed_out

    first_row = {"symbol": "BTCUSDT", "id": "a"}
    started = time.monotonic()
    stored, refused, reason, timed_out = run_coroutine(scenario())
    assert stored is True and refused is False and reason == "the store is failing: disk full"
    assert timed_out is False and not acks.waiting() and time.monotonic() - started < 2


@pytest.fixture()
def system(store: Store, tmp_path: Path):  # noqa: ANN201
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"), TICKCAST_INGEST_ACK="stored")
    system = EmbeddedSystem(settings, simulator=False, store=store)
    system.start_flow()
    yield system
    assert system.stop(timeout=20)


def test_a_202_in_stored_mode_means_the_rows_are_in_the_store(system: EmbeddedSystem, store: Store) -> None:
    app = system.app()
    key = {"X-API-Key": system.settings.API_KEYS[0]}

    async def post(path: str, body: object) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(path, json=body, headers=key, timeout=30)

    now = int(time.time() * 1000)
    ticks = [{"symbol": "BTCUSDT", "ts": now - i, "score": 0.1, "provider": "acks", "id": f"s{i}"} for i in range(300)]
    r = run_coroutine(post("/api/sentiment/ticks", {"ticks": ticks}))
    assert r.status_code == 202 and r.json() == {"accepted": 300, "stored": True}
    assert store.count("sentiment_ticks") == 300  # at the moment of the 202, not eventually
    r = run_coroutine(post("/api/sentiment/ticks", {"ticks": ticks[:10]}))  # duplicates: rows in rejected_records
    assert r.status_code == 202
    assert store.count("rejected_records", "reason LIKE 'duplicate%'") == 10
    minute = now // 60_000 * 60_000 - 120_000
    candle = {**CANDLE, "open_time": minute, "close_time": minute + 60_000}
    candle.pop("ingest_ts")
    for _ in range(2):  # the second is dropped by the flow as already handled: still a prompt 202
        started = time.monotonic()
        r = run_coroutine(post("/api/market/candle", candle))
        assert r.status_code == 202 and time.monotonic() - started < 5
    assert store.count("candles") == 1
