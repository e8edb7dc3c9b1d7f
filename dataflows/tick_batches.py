"""Decoded ticks as columns: one Arrow table per batch, split by symbol.

The decode step accepts ticks in two ways — the columnar fast path
(`dataflows.tick_decode`) and the per-record reference path for everything else — and
hands each symbol one `SymbolTicks`: where its rows are in the batch's Arrow table (what
`sentiment_ticks` stores, taken once per shard and batch by the side work) and numpy
arrays of the columns the sentiment engine reads. No dict per tick is built on the way
from the broker to ClickHouse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataflows.kernels.id_hash import hash_ids
from dataflows.tick_decode import TICK_COLUMNS, TICK_SCHEMA

_NUMERIC = ("ts", "ingest_ts", "score", "polarity", "weight", "id_hash")
_FIELDS = ("source", *_NUMERIC, "rows", "at")  # SymbolTicks' fields, in order


@dataclass(slots=True)  # not frozen (read-only all the same): a frozen __init__ costs ~1 µs more per symbol
class SymbolTicks:
    """One symbol's ticks in arrival order and their numeric columns as numpy arrays (ts,
    ingest_ts, score, polarity, weight, id_hash). The rows themselves are either Arrow
    (TICK_COLUMNS + weight, the columnar path): rows `at` of `source`, the whole batch's
    table in arrival order (not grouped by symbol), or `rows` (decode_record dicts with
    their weight: small live batches, where building Arrow would cost more than the ticks).

    The shard's side work stores the ticks of all its symbols that came in one batch with
    one take from `source` (`dataflows.symbol_logic`), so the symbol's own `table` is only
    cut when something asks for it (a snapshot of side work not done yet, a test)."""

    source: pa.Table | None
    ts: np.ndarray
    ingest_ts: np.ndarray
    score: np.ndarray
    polarity: np.ndarray
    weight: np.ndarray
    id_hash: np.ndarray
    rows: list[dict[str, Any]] | None = None
    # The rows' positions in `source`, in arrival order; an int: the consecutive rows from there
    # on (rows already grouped, e.g. a live burst's one per symbol: an int costs less than an
    # array view per symbol); None: all of `source`.
    at: np.ndarray | int | None = None

    def __len__(self) -> int:
        return self.ts.size  # an int already (the shard step asks several times per symbol)

    def positions(self) -> np.ndarray:
        """The rows' positions in `source`, in arrival order."""
        at = self.at
        if isinstance(at, np.ndarray):
            return at
        start = at or 0
        return np.arange(start, start + self.ts.size)

    @property
    def table(self) -> pa.Table | None:
        """These ticks' rows as Arrow (None when they are `rows`)."""
        source, at, n = self.source, self.positions(), self.ts.size
        if source is None:
            return None
        start = int(at[0]) if n else 0
        if np.array_equal(at, np.arange(start, start + n)):  # consecutive rows: no copy
            return source if n == source.num_rows else source.slice(start, n)
        return source.take(pa.array(at))

    def __getstate__(self) -> list[Any]:
        # The fields as before `at` (the batch's table is not pickled into every symbol's
        # side work): snapshots read and written as they were.
        return [self.table, self.ts, self.ingest_ts, self.score, self.polarity, self.weight, self.id_hash, self.rows]

    def __setstate__(self, state: list[Any]) -> None:
        # (older snapshots: without `rows`; `at` is never pickled: `source` is these rows)
        values = [*state, None, None][:9] if len(state) == 7 else [*state, None]
        for name, value in zip(_FIELDS, values, strict=True):
            setattr(self, name, value)

    @classmethod
    def group_records(cls, ticks: list[dict[str, Any]], trust: Mapping[str, float]) -> dict[str, SymbolTicks]:
        """decode_record tick dicts grouped by symbol (arrival order kept), arrays built once
        for the whole batch and sliced per symbol."""
        rows = sorted(ticks, key=lambda r: r["symbol"])  # stable: arrival order within a symbol
        for row in rows:
            row["weight"] = trust.get(row["provider"], 1.0)
        arrays = (
            np.array([r["ts"] for r in rows], np.int64),
            np.array([r["ingest_ts"] for r in rows], np.int64),
            np.array([r["score"] for r in rows], np.float64),
            np.array([r["polarity"] for r in rows], np.int8),
            np.array([r["weight"] for r in rows], np.float64),
            hash_ids([r["id"] for r in rows]),
        )
        out: dict[str, SymbolTicks] = {}
        start = 0
        for end in range(1, len(rows) + 1):
            if end == len(rows) or rows[end]["symbol"] != rows[start]["symbol"]:
                part = slice(start, end)
                ts, ingest_ts, score, polarity, weight, id_hash = (a[part] for a in arrays)
                out[rows[start]["symbol"]] = cls(None, ts, ingest_ts, score, polarity, weight, id_hash, rows[part])
                start = end
        return out

    def stored(self, accepted: np.ndarray, n_ok: int) -> list[dict[str, Any]]:
        """The accepted dict rows (`rows` ticks; Arrow ticks are stored per batch table and
        shard, `dataflows.symbol_logic.BatchTicks`)."""
        rows = self.rows
        assert rows is not None
        return rows if n_ok == len(self) else [r for r, ok in zip(rows, accepted.tolist()) if ok]

    def records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """Rows as decode_record-shaped dicts (for rejected_records payloads)."""
        if self.rows is not None:
            return [{k: self.rows[i][k] for k in TICK_COLUMNS} for i in rows.tolist()]
        assert self.source is not None  # one of the two is set
        return tick_records(self.source, self.positions()[rows])


def tick_records(source: pa.Table, positions: np.ndarray) -> list[dict[str, Any]]:
    """Rows `positions` of a batch's table as decode_record-shaped dicts (rejected_records payloads)."""
    return source.select(list(TICK_COLUMNS)).take(pa.array(positions)).to_pylist()


def table_from_records(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    """decode_record tick dicts as a TICK_SCHEMA table."""
    return pa.Table.from_pylist(list(records), schema=TICK_SCHEMA)  # takes the schema's keys, ignores others


def _in_arrival_order(parts: Sequence[tuple[pa.Table, np.ndarray | None, np.ndarray]]) -> tuple[pa.Table, np.ndarray]:
    """The parts' rows as one table in arrival order, and their id hashes. Ticks that came by
    both paths (rare: the per-record path takes odd records) are put in arrival order with a
    take: the side work stores a table's rows in its order, and of rows with the same key in
    one insert a ReplacingMergeTree keeps the last (a tick re-sent after the dedup window)."""
    hashes = np.concatenate([h if h is not None else hash_ids(t.column("id").to_pylist()) for t, h, _ in parts])
    if len(parts) == 1:  # one part is in arrival order already
        return parts[0][0], hashes
    arrival = np.argsort(np.concatenate([p[2] for p in parts]), kind="stable")
    return pa.concat_tables([p[0] for p in parts]).take(pa.array(arrival)), hashes[arrival]


def split_by_symbol(
    parts: Sequence[tuple[pa.Table, np.ndarray | None, np.ndarray]],
    trust: Mapping[str, float],
) -> dict[str, SymbolTicks]:
    """Group accepted ticks by symbol, keeping arrival order within each symbol.

    `parts`: (table, id_hash or None to compute, positions) — positions are the ticks'
    indexes in the batch, which order ticks that came by different paths.
    """
    parts = [p for p in parts if p[0].num_rows]
    if not parts:
        return {}
    table, id_hash = _in_arrival_order(parts)
    symbols = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    codes = symbols.indices.to_numpy(zero_copy_only=False)
    # Codes number the symbols as they first come: codes that never go down are rows already
    # grouped in arrival order (a live burst, its ticks one per symbol), so no sort.
    if bool((codes[1:] >= codes[:-1]).all()):
        grouped, order = True, None
    else:
        # numpy's stable sort of 16-bit keys is a radix sort: ~20x its int32 merge sort here
        keys = codes.astype(np.uint16) if len(symbols.dictionary) <= 1 << 16 else codes
        grouped, order = False, np.argsort(keys, kind="stable")
    providers = pc.dictionary_encode(table.column("provider")).combine_chunks()
    weight_of = np.array([trust.get(p, 1.0) for p in providers.dictionary.to_pylist()], np.float64)
    weight = weight_of[providers.indices.to_numpy(zero_copy_only=False)]
    # The table stays in arrival order (what the side work stores is taken from it once per
    # shard); only the numpy columns the kernels read are grouped by symbol.
    table = table.append_column("weight", pa.array(weight))
    columns = [table.column(name).to_numpy() for name in ("ts", "ingest_ts", "score", "polarity")]
    if order is None:
        ts, ingest_ts, score, polarity = map(np.ascontiguousarray, columns)
        hashes = id_hash
    else:
        ts, ingest_ts, score, polarity, weight, hashes = (a[order] for a in (*columns, weight, id_hash))
    names = symbols.dictionary.to_pylist()
    if grouped and len(names) == codes.size:  # one tick per symbol: each its row of the columns
        # a 2-D view's rows are the 1-row slices a[i:i + 1] are, iterated in C, not cut one by one
        views = [a.reshape(-1, 1) for a in (ts, ingest_ts, score, polarity, weight, hashes)]
        return dict(zip(names, map(SymbolTicks, repeat(table), *views, repeat(None), range(len(names)))))
    codes = codes if order is None else codes[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [codes.size]]).tolist()
    # where each symbol's rows are in the table: from an int on when not sorted (consecutive)
    ats = starts if order is None else [order[a:b] for a, b in zip(starts, ends, strict=True)]
    return {  # per symbol: numpy views and where its rows are in the batch's table
        names[code]: SymbolTicks(
            table, ts[a:b], ingest_ts[a:b], score[a:b], polarity[a:b], weight[a:b], hashes[a:b], None, at
        )
        for code, a, b, at in zip(codes[starts].tolist(), starts, ends, ats, strict=True)
    }
