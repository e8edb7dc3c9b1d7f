"""`TICKCAST_INGEST_ACK=stored`: an ingest request answers 202 only once its rows are stored.

Each accepted record has a natural key — a tick `(symbol, id)`, a candle `(symbol, interval,
open_time)` — and the flow turns it into exactly one row keyed by it: in `sentiment_ticks` or
`candles` when accepted, or in `rejected_records` (whose payload is the record) when refused
(duplicate, late, out of order, disabled provider, …). A request registers its keys *before*
its records reach the flow; the store writer reports every inserted piece of those three
tables (`dataflows.sinks.WriteMonitor.on_written`) and a request is done when all its keys
have been seen. One case makes no row: a candle sent again with the open time of the last
candle stored for its symbol and interval (the flow drops it as already handled) — it is
done at once, since its row is in the store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tickcast.records import tick_id

Key = tuple[Any, ...]
TRACKED_TABLES = ("sentiment_ticks", "candles", "rejected_records")


def record_key(record: dict[str, Any]) -> Key | None:
    """The natural key of a decoded (or raw) tick or candle; None for anything else."""
    try:
        if "score" in record:
            rid = record.get("id")
            if rid is None:
                rid = tick_id(record["provider"], record["symbol"], int(record["ts"]), float(record["score"]))
            return ("tick", record["symbol"], rid)
        if "open_time" in record:
            return ("candle", record["symbol"], record["interval"], int(record["open_time"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


class Receipt:
    """One request's wait for its rows. `wait()` runs on the event loop; the writer thread resolves it."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self.pending: set[Key] = set(keys)
        self.refused: str | None = None  # why it will not be confirmed (the store is failing)
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return not self.pending

    def _settle(self) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def _on_settled(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not (self.done or self.refused):
                self._callbacks.append(callback)
                return
        callback()

    async def wait(self, timeout_s: float) -> bool:
        """True once every record's row is stored; False on timeout or refusal (see `refused`)."""
        loop = asyncio.get_running_loop()
        settled = loop.create_future()

        def wake() -> None:
            def settle() -> None:
                if not settled.done():
                    settled.set_result(None)

            loop.call_soon_threadsafe(settle)

        self._on_settled(wake)
        try:
            await asyncio.wait_for(settled, timeout_s)
        except TimeoutError:
            return False
        return self.done


class StoredAcks:
    """The receipts waiting for rows, resolved from the store writer's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[Key, list[Receipt]] = {}
        self._last_candle: dict[tuple[str, str], int] = {}  # (symbol, interval) -> newest open_time stored

    def waiting(self) -> bool:
        return bool(self._waiting)

    def waiting_for(self, table: str) -> bool:
        """Does a request wait for rows of `table`? (Its inserts then skip the LiveGate.)"""
        return table in TRACKED_TABLES and bool(self._waiting)

    def register(self, records: Sequence[dict[str, Any]]) -> Receipt:
        keys = {key for key in map(record_key, records) if key is not None}
        receipt = Receipt(keys)
        with self._lock:
            for key in keys:
                if key[0] == "candle" and self._last_candle.get((key[1], key[2])) == key[3]:
                    receipt.pending.discard(key)  # the flow will drop it as already handled: stored
                    continue
                self._waiting.setdefault(key, []).append(receipt)
        return receipt

    def forget(self, receipt: Receipt) -> None:
        """Stop tracking a receipt nobody waits for any more (refused, timed out)."""
        with self._lock:
            for key in receipt.pending:
                waiters = self._waiting.get(key)
                if waiters is not None:
                    waiters[:] = [r for r in waiters if r is not receipt]
                    if not waiters:
                        del self._waiting[key]

    def refuse_all(self, reason: str) -> None:
        """The store is failing: every waiting request is answered now (503) instead of at its timeout."""
        with self._lock:
            receipts = {id(r): r for waiters in self._waiting.values() for r in waiters}.values()
            self._waiting.clear()
        for receipt in receipts:
            receipt.refused = reason
            receipt._settle()

    def on_written(self, table: str, pieces: list[Any]) -> None:
        """Writer thread, after an insert into `table` returned."""
        if table == "candles":
            self._note_candles(pieces)
        if table not in TRACKED_TABLES or not self._waiting:
            return
        done: list[Receipt] = []
        with self._lock:
            for key in _written_keys(table, pieces):
                for receipt in self._waiting.pop(key, ()):
                    receipt.pending.discard(key)
                    if receipt.done:
                        done.append(receipt)
        for receipt in done:
            receipt._settle()

    def _note_candles(self, pieces: list[Any]) -> None:
        with self._lock:
            for key in _written_keys("candles", pieces):
                _, symbol, interval, open_time = key
                if open_time > self._last_candle.get((symbol, interval), -1):
                    self._last_candle[(symbol, interval)] = open_time


def _written_keys(table: str, pieces: list[Any]) -> Iterable[Key]:
    for piece in pieces:
        if table == "rejected_records":
            for row in _dict_rows(piece, ("payload",)):
                try:
                    obj = orjson.loads(row["payload"])
                except orjson.JSONDecodeError:
                    continue
                key = record_key(obj) if isinstance(obj, dict) else None
                if key is not None:
                    yield key
        elif table == "sentiment_ticks":
            for row in _dict_rows(piece, ("symbol", "id")):
                yield ("tick", row["symbol"], row["id"])
        else:
            for row in _dict_rows(piece, ("symbol", "interval", "open_time")):
                yield ("candle", row["symbol"], row["interval"], int(row["open_time"]))


def _dict_rows(piece: Any, names: tuple[str, ...]) -> Iterable[dict[str, Any]]:
    """The named columns of a piece (dict rows, Arrow table or ColumnBlock) as dict rows."""
    if isinstance(piece, (list, tuple)):
        return piece
    if isinstance(piece, pa.Table):
        columns = {name: _pylist(piece.column(name)) for name in names}
    else:  # ColumnBlock: a column may be a constant of the block
        n = piece.num_rows
        columns = {
            name: ([piece.constants[name]] * n if name in piece.constants else _pylist(pa.array(piece.arrays[name])))
            for name in names
        }
    return (dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True))


def _pylist(column: Any) -> list[Any]:
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.int64())
    return column.to_pylist()
