"""`TakenRows`: a replay shard's rows of a batch table, taken by the writer thread. Every
shard's rows of one table come out of one take, in the table's order, sources in the order
they first came (a tick key stored twice keeps which copy is last); anything else among the
pieces keeps every piece in its place; pickled (between workers, into a snapshot), it is
the taken rows alone."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa

from tickcast.store import TakenRows


def _table(tag: str, n: int) -> pa.Table:
    return pa.table({"id": [f"{tag}{i}" for i in range(n)], "x": np.arange(n, dtype=np.int64)})


def test_every_shards_rows_of_a_table_come_out_of_one_take_in_table_order() -> None:
    a, b = _table("a", 10), _table("b", 6)
    shards = [
        TakenRows(a, np.array([1, 4, 9])),
        TakenRows(b, np.array([0, 5])),
        TakenRows(a, np.array([0, 2, 3])),
        TakenRows(b, np.array([2])),
    ]
    taken = TakenRows.taken(shards)
    assert [t.column("id").to_pylist() for t in taken] == [
        ["a0", "a1", "a2", "a3", "a4", "a9"],
        ["b0", "b2", "b5"],
    ]
    # a whole table is handed on as it is
    whole = TakenRows.taken([TakenRows(a, np.arange(10))])
    assert len(whole) == 1 and whole[0] is a


def test_other_pieces_keep_every_piece_in_its_place() -> None:
    a = _table("a", 5)
    rows = [{"id": "d0", "x": 0}]
    pieces = [TakenRows(a, np.array([3])), rows, TakenRows(a, np.array([1]))]
    taken = TakenRows.taken(pieces)
    assert taken[1] is rows
    assert [taken[0].column("id").to_pylist(), taken[2].column("id").to_pylist()] == [["a3"], ["a1"]]
    assert TakenRows.taken([rows]) == [rows]


def test_pickled_it_is_the_taken_rows_alone() -> None:
    a = _table("a", 100_000)
    piece = TakenRows(a, np.array([7, 99_999]))
    data = pickle.dumps(piece)
    assert len(data) < 5_000  # not the 100,000-row source
    back = pickle.loads(data)
    assert isinstance(back, pa.Table) and back.column("id").to_pylist() == ["a7", "a99999"]
    assert len(piece) == piece.num_rows == 2
