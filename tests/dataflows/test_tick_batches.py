"""SymbolTicks cuts its Arrow rows from the batch's table only when they are asked for (the
side work stores them after the model stage), and pickles as it did before: snapshots of
side work written by older code load, and the ones written now hold each symbol's rows only."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa

from dataflows.tick_batches import SymbolTicks, split_by_symbol
from dataflows.tick_decode import TICK_SCHEMA


def _ticks(n: int) -> pa.Table:
    rows = [
        {
            "id": f"t{i}",
            "symbol": ("AUSDT", "BUSDT", "CUSDT")[i % 3],
            "ts": 1_000 + i,
            "score": 0.1 * i,
            "polarity": 1,
            "provider": ("p", "q")[i % 2],
            "meta": None,
            "ingest_ts": 2_000 + i,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=TICK_SCHEMA)


def _columns(ticks: SymbolTicks) -> list[list[object]]:
    arrays = (ticks.ts, ticks.ingest_ts, ticks.score, ticks.polarity, ticks.weight, ticks.id_hash)
    return [a.tolist() for a in arrays]


def test_each_symbols_table_is_its_rows_of_the_batch_in_arrival_order() -> None:
    table = _ticks(10)
    split = split_by_symbol([(table, None, np.arange(10))], {"p": 0.5})
    for symbol, ticks in split.items():
        expected = [r for r in table.to_pylist() if r["symbol"] == symbol]
        got = ticks.table
        assert got is not None and got.num_rows == len(ticks) == len(expected)
        assert [{k: r[k] for k in expected[0]} for r in got.to_pylist()] == expected
        assert got.column("ts").to_pylist() == ticks.ts.tolist()
        assert got.column("weight").to_pylist() == ticks.weight.tolist()
        assert ticks.records(np.array([0])) == expected[:1]


def test_a_pickle_holds_the_symbols_rows_only_and_reads_back_the_same() -> None:
    split = split_by_symbol([(_ticks(300), None, np.arange(300))], {})
    ticks = split["CUSDT"]
    assert ticks.source is not None and ticks.source.num_rows == 300 and ticks.at is not None
    assert ticks.at.tolist() == list(range(2, 300, 3))  # its rows of the batch table (in arrival order)
    back = pickle.loads(pickle.dumps(ticks))
    assert back.at is None and back.source is not None and back.source.num_rows == 100
    assert back.table is not None and ticks.table is not None and back.table.equals(ticks.table)
    assert _columns(back) == _columns(ticks) and back.rows is None


def test_side_work_pickled_by_older_code_loads() -> None:
    """Older SymbolTicks pickled their fields as a list: (table, six arrays, rows) and, before
    dict rows, (table, six arrays)."""
    ticks = split_by_symbol([(_ticks(9), None, np.arange(9))], {})["BUSDT"]
    table = ticks.table
    arrays = [ticks.ts, ticks.ingest_ts, ticks.score, ticks.polarity, ticks.weight, ticks.id_hash]
    for state in ([table, *arrays, None], [table, *arrays]):
        old = SymbolTicks.__new__(SymbolTicks)
        old.__setstate__(state)
        assert old.table is table and old.rows is None and old.at is None
        assert _columns(old) == _columns(ticks)
    rows = [{"id": "x"}]
    old = SymbolTicks.__new__(SymbolTicks)
    old.__setstate__([None, *arrays, rows])
    assert old.table is None and old.rows is rows


def test_symbols_keep_arrival_order_with_few_and_with_more_symbols_than_16_bits_count() -> None:
    """The grouping sorts symbol codes (16-bit keys while the batch has at most 65,536 symbols,
    its own codes past that): either way each symbol's rows in arrival order."""
    for symbols in (5, 200_000):  # 200,000 drawn 140,000 times: ~100,000 distinct
        n = 140_000
        rng = np.random.default_rng(symbols)
        names = [f"S{k}USDT" for k in rng.integers(0, symbols, n)]
        table = pa.table(
            {
                "id": [f"t{i}" for i in range(n)],
                "symbol": names,
                "ts": np.arange(n, dtype=np.int64),
                "score": np.zeros(n),
                "polarity": np.ones(n, np.int8),
                "provider": ["p"] * n,
                "meta": ["{}"] * n,
                "ingest_ts": np.arange(n, dtype=np.int64),
            }
        )
        split = split_by_symbol([(table, None, np.arange(n))], {})
        expected: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            expected.setdefault(name, []).append(i)
        assert list(split) == list(expected)  # symbols as they first came
        assert {s: t.ts.tolist() for s, t in split.items()} == expected
