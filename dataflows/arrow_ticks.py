"""Columnar decode of Parquet ticks: Arrow columns -> `FastTicks`, no row dicts, no JSON.

`decode_table` is a fast path for `tickcast.records.decode_record` on the row dicts Arrow's
`to_pylist` gives (what the file source used to hand the decode step): every row it marks
`ok` is one `decode_record` accepts as a tick from a file (no hint, no key), with the same
normalized values; every other row is left to the per-record path, which decides its fate
(and so gives the same rejection reason by construction). The checks themselves are
`tick_decode.check_columns` / `assemble_ticks`, shared with the JSON path; this module only
brings each column to the value the row dict holds, and marks not-ok what it cannot:

- a file takes this path only when `columnar(schema)`: tick columns only (no `_control`, no
  candle or unknown column), types whose Python value is plain (strings; ints; float32/64
  for numbers; `meta` a string or a struct of strings/ints/bools); otherwise its rows go on
  as dicts, as before;
- times and polarity in a float column: only finite integral values (`_int_ms` takes
  1.0 as 1, refuses NaN, inf and 1.5); an unsigned value past int64: not ok;
- `id`: no control character (`records._CONTROL_CHARS_RE`), which the JSON path's scanner
  checks on the bytes;
- `too_large`: the dict path measures the row's compact JSON. An upper bound of it (every
  string byte escaped as \\u00XX, every number at its longest) must be within
  `max_record_bytes`; rows past the bound go to the per-record path, which measures.
- `meta`: each distinct value (a JSON string, or a struct value: its children's codes)
  goes through `records.meta_text` once, as the dict (`to_pylist`) holds it, so a struct
  child that is null in a row is stored as null, as that dict says.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pt

from dataflows.tick_decode import (
    _READ_SCHEMA,
    FastTicks,
    _none_ok,
    assemble_ticks,
    check_columns,
    ids_with_control_chars,
)
from tickcast.records import MAX_FUTURE_MS, MAX_RECORD_BYTES, TICK_FIELDS, InvalidField, meta_text

__all__ = ["columnar", "decode_table"]

_NAMES = ("symbol", "provider", "id")
_TIMES = ("ts", "ingest_ts", "polarity")  # int64 in _READ_SCHEMA
_INT64_MAX = 2**63 - 1
_SAFE_FLOAT = 2.0**62  # far past any valid time; a float beyond it is not cast
# Longest JSON orjson writes for a value of a type (strings: per byte, plus the quotes)
_NUMBER_CHARS = 24  # -2.2250738585072014e-308, -9223372036854775808
_ESCAPED_BYTE = 6  # \u001f


def _plain(t: pa.DataType) -> bool:
    return pt.is_string(t) or pt.is_large_string(t)


def _number(t: pa.DataType) -> bool:
    return pt.is_integer(t) or pt.is_float32(t) or pt.is_float64(t)


def _struct_meta(t: pa.DataType) -> bool:
    if not pt.is_struct(t):
        return False
    fields = [t.field(i) for i in range(t.num_fields)]
    kinds = all(_plain(f.type) or pt.is_integer(f.type) or pt.is_boolean(f.type) for f in fields)
    return bool(fields) and kinds and len({f.name for f in fields}) == len(fields)


def columnar(schema: pa.Schema) -> bool:
    """Can `decode_table` read rows of this schema (else they go on as dicts)?"""
    names = schema.names
    if "score" not in names or len(set(names)) != len(names) or not set(names) <= set(TICK_FIELDS):
        return False
    for f in schema:
        if f.name in _NAMES and not _plain(f.type):
            return False
        if f.name in (*_TIMES, "score") and not _number(f.type):
            return False
        if f.name == "meta" and not (_plain(f.type) or _struct_meta(f.type)):
            return False
    return True


def _as_int64(col: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(the column as int64, null where the dict's value is not an int taken as is; per row:
    the value is the dict's or null in both)."""
    if pt.is_integer(col.type):
        if col.type != pa.uint64():
            return col.cast(pa.int64()), np.ones(len(col), bool)
        big = pc.fill_null(pc.greater(col, pa.scalar(_INT64_MAX, pa.uint64())), False)
        return pc.if_else(big, None, col).cast(pa.int64(), safe=False), ~big.to_numpy(zero_copy_only=False)
    values = col.cast(pa.float64())
    whole = pc.and_(pc.is_finite(values), pc.equal(pc.trunc(values), values))
    whole = pc.fill_null(pc.and_(whole, pc.less(pc.abs(values), _SAFE_FLOAT)), False)
    exact = whole.to_numpy(zero_copy_only=False) | pc.is_null(col).to_numpy(zero_copy_only=False)
    return pc.if_else(whole, values, None).cast(pa.int64(), safe=False), exact


def _read_columns(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """The rows as a `_READ_SCHEMA` table and the mask of rows whose values it holds as the
    row dicts do (missing columns: all null, as `dict.get` gives None)."""
    n = table.num_rows
    ok = np.ones(n, bool)
    columns = []
    for f in _READ_SCHEMA:
        if f.name not in table.column_names:
            columns.append(pa.nulls(n, f.type))
            continue
        col = table.column(f.name).combine_chunks()
        if f.type == pa.int64():
            col, exact = _as_int64(col)
            ok &= exact
        else:
            col = col.cast(f.type, safe=False)  # score: float(int) rounds, as the dict path does
        columns.append(col)
    cols = pa.Table.from_arrays(columns, schema=_READ_SCHEMA)
    ok &= ~ids_with_control_chars(cols["id"])
    return cols, ok


def _json_bound(col: pa.Array) -> np.ndarray:
    """Per row: at least the length of the value's JSON, as orjson writes it."""
    t = col.type
    if _plain(t):
        size = pc.fill_null(pc.binary_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return 6 + _ESCAPED_BYTE * size
    if pt.is_struct(t):
        bound = np.full(len(col), 2, np.int64)
        for i in range(t.num_fields):
            name = len(t.field(i).name.encode()) * _ESCAPED_BYTE + 4  # "name": and a comma
            bound += name + _json_bound(pc.struct_field(col, [i]))
        return np.maximum(bound, 4)
    return np.full(len(col), _NUMBER_CHARS, np.int64)  # numbers, bools, null


def _json_size_bound(table: pa.Table) -> np.ndarray:
    """Per row: at least the size of the row dict's compact JSON (records._parse's `too_large`)."""
    bound = np.full(table.num_rows, 2, np.int64)
    for name, col in zip(table.column_names, table.columns, strict=True):
        bound += len(name) * _ESCAPED_BYTE + 4 + _json_bound(col.combine_chunks())
    return bound


def _stored_meta(value: object) -> str | None:
    """`_tick`'s meta rule on a row dict's meta value: the stored text, or None if refused."""
    try:
        return meta_text(value)
    except InvalidField:
        return None


def _codes(col: pa.Array) -> np.ndarray:
    """Per row: a code equal for equal values (nulls share one)."""
    if pt.is_boolean(col.type):
        col = col.cast(pa.int8())
    enc = pc.dictionary_encode(col)
    return pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)


def _one_key(codes: list[np.ndarray]) -> np.ndarray:
    """Per row, one int64 equal exactly when all `codes` are (mixed radix; rows of codes when
    the product of their ranges would not fit)."""
    key = np.zeros(codes[0].size, np.int64)
    span = 1
    for c in codes:
        size = int(c.max(initial=0)) + 1
        if span * size >= 2**62:
            return np.stack(codes, axis=1)
        key = key * size + c
        span *= size
    return key


def _meta(table: pa.Table, rows_ok: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """(per-row code into `texts`, texts, per-row meta valid), each distinct meta value through
    `meta_text` once, as the row dict holds it. Rows without meta get "{}"."""
    n = rows_ok.size
    valid = np.ones(n, bool)
    rows = np.flatnonzero(rows_ok)
    if "meta" not in table.column_names or not rows.size:
        return np.zeros(n, np.int64), pa.array(["{}"], pa.string()), valid
    col = table.column("meta").combine_chunks().take(pa.array(rows))
    if pt.is_struct(col.type):
        parts = [pc.is_null(col).to_numpy(zero_copy_only=False).astype(np.int64)]
        parts += [_codes(pc.struct_field(col, [i])) for i in range(col.type.num_fields)]
        _, first, inverse = np.unique(_one_key(parts), axis=0, return_index=True, return_inverse=True)
        distinct = col.take(pa.array(first)).to_pylist()
    else:
        enc = pc.dictionary_encode(col)
        distinct = [*enc.dictionary.to_pylist(), None]
        inverse = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False)
    texts = [_stored_meta(v) for v in distinct]
    codes = np.full(n, len(texts), np.int64)  # the last text is the default "{}"
    codes[rows] = np.asarray(inverse, np.int64).reshape(-1)
    valid[rows] = np.array([t is not None for t in texts])[codes[rows]]
    return codes, pa.array([t or "{}" for t in texts] + ["{}"], pa.string()), valid


def decode_table(
    table: pa.Table,
    *,
    pos_threshold: float = 0.0,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_future_ms: int = MAX_FUTURE_MS,
    wall_ms: int | None = None,
) -> FastTicks:
    """The clean ticks among Parquet rows of a `columnar` schema, column-wise: row i `ok`
    matches `decode_record(row_dict_i, source=…, now_ms=…, default_ingest="event", …)` with
    the same `pos_threshold`, `max_record_bytes`, `max_future_ms` and `wall_ms`."""
    n = table.num_rows
    if not n or not columnar(table.schema):
        return _none_ok(np.zeros(n, bool))
    cols, ok = _read_columns(table)
    ok &= _json_size_bound(table) <= max_record_bytes
    checked = check_columns(cols, ok, np.full(n, -1, np.int64), max_future_ms=max_future_ms, wall_ms=wall_ms)
    meta_codes, meta_texts, meta_valid = _meta(table, checked.ok)
    checked.ok[:] &= meta_valid
    return assemble_ticks(cols, checked, meta_codes, meta_texts, pos_threshold)
