"""The embedded ingest buffer: accepted HTTP records waiting for the flow, bounded in records.

`tickcast up` hands each POST's records to the dataflow through this inbox (the flow's
`QueueSource` polls it every 5 ms). It is bounded so that a flow held up by a failing
store cannot grow the process without limit: a request that does not fit is refused with
`IngestRefused`, which the API turns into 503 + `Retry-After` — nothing of it is accepted.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any

from tickcast import metrics

RETRY_AFTER_S = 5  # the Retry-After of an ingest 503 (buffer full, store failing, not confirmed stored)


class IngestRefused(Exception):
    """Ingest cannot take these records now; nothing was accepted (the API answers 503)."""

    def __init__(self, message: str, *, reason: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class IngestInbox:
    """A FIFO of one-request lists of records (and control items such as `STOP`), bounded in records.

    `offer(batch)` refuses a request that would take the inbox past `max_records`; a request
    larger than the bound is still taken by an empty inbox, so no request is refused forever.
    `force` and control items (`put`) always go in. `get_nowait`/`empty` are what `QueueSource` uses.
    """

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._items: deque[Any] = deque()
        self._records = 0
        self._lock = threading.Lock()

    @property
    def records(self) -> int:
        return self._records

    def offer(self, batch: list[Any], *, why_full: str = "", force: bool = False) -> None:
        with self._lock:
            if not force and self._records and self._records + len(batch) > self.max_records:
                full = self._records
            else:
                self._items.append(batch)
                self._records += len(batch)
                full = 0
        metrics.INGEST_BUFFER_RECORDS.set(self._records)
        if full:
            raise IngestRefused(
                f"the ingest buffer is full ({full:,} accepted records wait for the dataflow, "
                f"TICKCAST_INGEST_BUFFER_RECORDS={self.max_records:,}){why_full}: nothing of this request "
                "was accepted; send it again later",
                reason="buffer_full",
                retry_after_s=RETRY_AFTER_S,
            )

    def put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    def get_nowait(self) -> Any:
        with self._lock:
            if not self._items:
                raise queue.Empty
            item = self._items.popleft()
            if isinstance(item, list):
                self._records -= len(item)
        metrics.INGEST_BUFFER_RECORDS.set(self._records)
        return item

    def empty(self) -> bool:
        return not self._items
