"""Step outputs: one item per table per activation, columnar pieces included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dataflows.items import Events, LiveEvent, Rows, TableRow
from dataflows.outputs import Out, Pieces, flat_pieces, rows_in
from tickcast.store import ColumnBlock


def test_an_activation_emits_one_item_per_table_and_the_writer_gets_every_piece() -> None:
    out = Out()
    blocks = [ColumnBlock({"ts": np.arange(n)}, {"symbol": f"S{n}"}) for n in (3, 1, 2)]
    for block in blocks:
        out.add_table("sentiment_ticks", block)
    out.add_table("sentiment_bars", pa.table({"bar_end": [1, 2]}))
    out.add_table("sentiment_bars", ColumnBlock({"bar_end": np.arange(0)}, {"symbol": "EMPTY"}))  # dropped
    out.append(TableRow("candles", {"symbol": "A"}))
    out.append(TableRow("candles", {"symbol": "B"}))
    out.append(LiveEvent("sentiment", {"kind": "tick"}, "A", 1))
    items = out.done()
    rows = [item for item in items if isinstance(item, Rows)]
    assert sorted(item.table for item in rows) == ["candles", "sentiment_bars", "sentiment_ticks"]
    by_table = {item.table: item.rows for item in rows}
    assert isinstance(by_table["sentiment_ticks"], Pieces) and list(by_table["sentiment_ticks"]) == blocks
    assert [rows_in(by_table[t]) for t in ("candles", "sentiment_bars", "sentiment_ticks")] == [2, 2, 6]
    # what the sink receives for a table: dict-row lists and single pieces, in order
    assert flat_pieces([by_table["candles"], by_table["sentiment_ticks"]]) == [by_table["candles"], *blocks]
    assert [item for item in items if isinstance(item, Events)] == [
        Events([LiveEvent("sentiment", {"kind": "tick"}, "A", 1)])
    ]


def test_the_in_process_queue_hands_over_records_and_whole_requests_in_order() -> None:
    import queue

    import pytest

    from dataflows.sources import STOP, QueueSource

    q: queue.Queue = queue.Queue()
    part = QueueSource(q, max_batch=4).build_part("input", "http", None)
    assert part.next_batch() == [] and part.next_awake() is not None  # idle: poll again soon
    q.put(("http", {"n": 0}, 1))
    q.put([("http", {"n": i}, 2) for i in range(1, 6)])  # one request: never split across batches
    q.put(("http", {"n": 6}, 3))
    first = part.next_batch()
    assert [r[1]["n"] for _, batch in first for r in batch] == [0, 1, 2, 3, 4, 5]
    assert [r[1]["n"] for _, batch in part.next_batch() for r in batch] == [6]
    q.put(STOP)
    with pytest.raises(StopIteration):
        part.next_batch()
    # records taken in the same poll as the stop go out before it (a graceful stop keeps them)
    q2: queue.Queue = queue.Queue()
    part = QueueSource(q2, max_batch=100).build_part("input", "http", None)
    q2.put([("http", {"n": i}, 1) for i in range(3)])
    q2.put(STOP)
    assert [r[1]["n"] for _, batch in part.next_batch() for r in batch] == [0, 1, 2]
    with pytest.raises(StopIteration):
        part.next_batch()
