"""`Lines` (a JSONL block's bytes and where each line is) reads like the list of line bytes it
stands for, and the columnar decoder gives the same ticks from it as from that list."""

from __future__ import annotations

import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.file_lines import _jsonl_index
from dataflows.line_block import Lines
from dataflows.tick_decode import decode_ticks

LINE = st.one_of(
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b and b.strip() == b),
    st.sampled_from([b'{"ts":1}', b"{}", b"x"]),
)
SEPARATOR = st.sampled_from([b"\n", b"\n\n", b" \n", b"\r\n", b"\n \t\n"])


def _block(lines: list[bytes], seps: list[bytes]) -> Lines:
    blob = b"".join(line + sep for line, sep in zip(lines, seps, strict=False))
    starts, ends, _ = _jsonl_index(np.frombuffer(blob, np.uint8), keyed=False)
    return Lines(blob, starts, ends)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LINE, SEPARATOR), max_size=30), st.integers(0, 31), st.integers(0, 31), st.integers(1, 4))
def test_lines_read_like_the_list_of_their_bytes(pairs, lo, hi, parts) -> None:
    lines = [line for line, _ in pairs]
    block = _block(lines, [sep for _, sep in pairs])
    assert list(block) == lines and block == lines and len(block) == len(lines)
    assert [block[k] for k in range(len(lines))] == lines
    assert list(block[lo:hi]) == lines[lo:hi]
    assert block.joined() == b"\n".join(lines)
    assert block[lo:hi].joined() == b"\n".join(lines[lo:hi])
    cuts = sorted({0, len(lines), *np.linspace(0, len(lines), parts + 1).astype(int).tolist()})
    pieces = [block[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    joined = Lines.concat(pieces)
    assert list(joined) == lines and joined.joined() == b"\n".join(lines)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LINE, SEPARATOR), max_size=30), st.data())
def test_taken_lines_are_those_lines_in_that_order_over_one_new_block(pairs, data) -> None:
    lines = [line for line, _ in pairs]
    block = _block(lines, [sep for _, sep in pairs])
    order = data.draw(st.lists(st.integers(0, max(len(lines) - 1, 0)), max_size=40) if lines else st.just([]))
    taken = block.take(np.array(order, np.int64))
    assert list(taken) == [lines[k] for k in order] and len(taken) == len(order)
    # one block, the lines joined by single newlines: what the decoder reads without a join
    assert taken.blob == b"\n".join(lines[k] for k in order) and taken.joined() is taken.blob


def test_the_decoder_gives_the_same_ticks_from_lines_as_from_their_list() -> None:
    rows = [
        b'{"symbol":"BTCUSDT","ts":1763683200555,"score":0.5,"provider":"x","meta":{"a":{"b":[1,2]}},"id":"a"}',
        b'{"symbol":"ETHUSDT","ts":1763683200600,"score":-0.25,"polarity":-1,"provider":"y","ingest_ts":1763683200700}',
        b'{"symbol":"BTCUSDT","ts":1763683200555,"score":2}',  # refused: score out of range
        b"not json",
        b'{"symbol":"BTCUSDT","ts":NaN,"score":0.5}',
    ]
    blob = b"\n".join(rows) + b"\n\n  " + rows[0] + b"  \r\n"
    starts, ends, _ = _jsonl_index(np.frombuffer(blob, np.uint8), keyed=False)
    block = Lines(blob, starts, ends)
    values = list(block)
    assert values == [*rows, rows[0]]
    now = int(time.time() * 1000)
    hints = np.full(len(values), -1, np.int64)
    a, b = decode_ticks(block, hints, now_ms=now), decode_ticks(values, hints, now_ms=now)
    assert a.ok.tolist() == b.ok.tolist() == [True, True, False, False, False, True]
    assert a.table.equals(b.table) and a.id_hash.tolist() == b.id_hash.tolist()
