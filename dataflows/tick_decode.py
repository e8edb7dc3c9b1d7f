"""Columnar decode of JSON sentiment ticks: many raw messages -> one Arrow table.

`decode_ticks` is a fast path for `tickcast.records.decode_record`: every row it marks
`ok` is a row `decode_record` accepts as a tick, with the same normalized values; every
other row is left to the caller's per-record path, which decides its fate. Marking a row
not-ok is always safe, so anything unusual goes there; clean ticks stay here.

How a batch goes:

0. Plain lines. The values are joined with b"\\n" and every line is walked once by
   `json_fields.read_plain` (a strict JSON grammar, UTF-8, no escapes, numbers it can read
   exactly, no `_control` or repeated member): the lines it vouches for have their fields
   already and go straight to step 3; only the others take steps 1 and 2, and the two parts
   are merged back in input order.
1. Framing. The values are joined with b"\\n" for `pyarrow.json.read_json`, so line i
   must be value i. A Numba kernel (`_scan_lines`) walks the blob once and refuses a
   line unless it is one JSON object with only spaces/tabs around it, valid UTF-8
   (strict, like bytes.decode), no NaN/Infinity token, nesting depth <= 64, backslash
   escapes of a legal letter. It also checks the top-level members Arrow cannot report
   or would fail the whole chunk on: `_control` present (a control record), `meta`
   (its raw value span is kept), an escaped member name (could spell either), a tracked
   member twice (`duplicate_key`), an `id` that may hold a control character (an escape
   spelling one, or a raw DEL), and a schema member of the wrong JSON type (string field
   not a string, number field not a number, int field with '.', 'e', 'E' or more than 18
   digits, score the int -0). Values holding b"\\n" or shorter than 2 bytes are swapped
   for b"{}" first; lines longer than `max_record_bytes` (`too_large`) are refused too;
   refused lines are overwritten in place with "{}" and spaces (an all-null row).
2. Parsing: Arrow, 1 MiB blocks (threads only past one block). If it raises, or
   returns another row count, the range is bisected down to MIN_BISECT_ROWS lines, whose
   rows all go to the slow path. After the scan only syntax errors inside a value
   (`tru`, `01`, `[1,]`, a bad \\u escape) get that far, so this is rare.
3. Validation, vectorized, with the same rules as `_tick`: symbol and provider are
   dictionary-encoded and each distinct value is checked by `records.valid_name` (what
   `records.checked_name` checks);
   ts and ingest_ts in [MIN_TS_MS, MAX_TS_MS] (missing ingest_ts: the hint, or ts
   without one); score finite in [-1, 1]; polarity -1/0/1 or derived from the score;
   id 1..128 code points, or `records.tick_id` (computed only for rows without one);
   meta: each distinct raw span goes through `records.meta_text`, `_tick`'s own rule;
   `records._check_record`'s envelope rules: ts at most `max_future_ms` after the row's
   ingest_ts (and, with `wall_ms`, that ingest_ts at most as far after the wall clock);
   the Kafka key, when there is one, equal to the symbol's UTF-8 bytes.
4. `id_hash`: FNV-1a 64 + splitmix64 finalizer over the id column's UTF-8 bytes, by a
   Numba kernel reading the Arrow offsets/data buffers.

What pyarrow 26's JSON reader does, measured against orjson (what `decode_record` uses):

- Same outcome: numbers in a string column, strings in a number column (including
  "score": "0.5"), bools in number columns, objects/arrays in typed columns -> Arrow
  raises ("changed from number to string"...), the ref rejects. Leading zeros, "+1",
  ".5", "1.", trailing commas, single quotes, comments, invalid escapes, lone or broken
  surrogate escapes, raw control characters in strings, "1e400" -> both refuse.
  "\\u0000", surrogate pairs, "\\/" and the other escapes decode to the same strings.
  Ints in the float64 column give float(int), like `_number`; decimal strings (many
  digits, subnormals, underflow to 0.0) round to the same double (300k random checked).
  JSON null in a schema field is null, i.e. missing, like `obj.get(name) is None`;
  nested objects/arrays and nulls in ignored fields are skipped.
- Arrow stricter (raises; the slow path accepts): integral floats (1.0, 1e3) in the
  int64 columns ts/ingest_ts/polarity; a schema key twice ("was specified twice";
  orjson keeps the last); ints beyond int64. The scanner sends these to the slow path
  before Arrow sees them.
- Arrow more lenient, all refused by the scanner:
  * NaN, Infinity, -Infinity literals are accepted anywhere (orjson: invalid JSON);
  * two objects on one line parse as two rows; a leading UTF-8 BOM is skipped; blank
    lines are skipped; nesting beyond orjson's limit (1024) is accepted;
  * a top-level `null` line crashes the process (segfault): only "{" lines reach Arrow;
  * invalid UTF-8 is not checked: string columns come back as invalid arrays;
  * the int literal -0 in the float64 column gives -0.0 where orjson's int 0 becomes
    0.0 (and tick_id hashes repr(score)); the float -0.0 is -0.0 in both;
  * member names are unescaped ("\\u0073core" is score), as orjson does, but `_control`
    and `meta` are not in the schema, so only unescaped names are trusted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter, le
from typing import Any, NamedTuple, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from numba import njit

from dataflows.json_fields import byte_classes, member_index, read_plain, utf8_width
from dataflows.kernels.id_hash import string_hash
from dataflows.line_block import Lines
from tickcast.records import (
    MAX_FUTURE_MS,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    MAX_TS_MS,
    MIN_TS_MS,
    PROVIDER_RE,
    SYMBOL_RE,
    InvalidField,
    meta_text,
    tick_id,
    valid_names,
)

__all__ = ["TICK_COLUMNS", "FastTicks", "decode_objects", "decode_ticks", "objects_as_json"]

TICK_COLUMNS = ("id", "symbol", "ts", "score", "polarity", "provider", "meta", "ingest_ts")
TICK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("symbol", pa.string()),
        ("ts", pa.int64()),
        ("score", pa.float64()),
        ("polarity", pa.int8()),
        ("provider", pa.string()),
        ("meta", pa.string()),
        ("ingest_ts", pa.int64()),
    ]
)
# What Arrow reads; polarity as int64 so 2 or 300 arrive as numbers to refuse, not as a parse error.
_READ_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("ts", pa.int64()),
        ("score", pa.float64()),
        ("provider", pa.string()),
        ("id", pa.string()),
        ("ingest_ts", pa.int64()),
        ("polarity", pa.int64()),
    ]
)
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_READ_SCHEMA, unexpected_field_behavior="ignore")
MIN_BISECT_ROWS = 32
MAX_DEPTH = 64  # far below orjson's 1024: a meta span parsed alone never meets a limit the record would
_BLOCK_BYTES = 1 << 20

# Line status from the scanner.
LINE_OK, LINE_BAD, LINE_SHORT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class FastTicks:
    """`ok[i]`: value i was accepted here; `table` holds just those rows, in input order,
    with TICK_COLUMNS; `id_hash` is aligned with `table`."""

    ok: np.ndarray
    table: pa.Table
    id_hash: np.ndarray


# ---------------------------------------------------------------------------
# Numba kernels


# Byte classes outside strings: a plain token byte (digits, sign, '.', e/E, letters of
# true/false/null), blank, line end, and what needs a look; N and I (NaN, Infinity),
# control bytes, non-ASCII and anything else JSON has no use for outside a string are refused.
_PLAIN, _BLANK, _QUOTE, _OPEN, _CLOSE, _COMMA, _COLON, _NEWLINE, _REFUSE = range(9)
_TOKEN_CLASS = byte_classes(
    _REFUSE,
    {
        b"0123456789+-.eEtrufalsn": _PLAIN,
        b" \t": _BLANK,
        b'"': _QUOTE,
        b"{[": _OPEN,
        b"}]": _CLOSE,
        b",": _COMMA,
        b":": _COLON,
        b"\n": _NEWLINE,
    },
)
# Byte classes inside strings (a raw newline is a control byte: the string never ends).
_S_PLAIN, _S_QUOTE, _S_ESCAPE, _S_HIGH, _S_CONTROL, _S_DEL = range(6)
_STRING_CLASS = np.full(256, _S_PLAIN, np.uint8)
_STRING_CLASS[:32] = _S_CONTROL
_STRING_CLASS[0x7F] = _S_DEL  # valid raw in JSON, but an id may not hold it (records._CONTROL_CHARS_RE)
_STRING_CLASS[128:] = _S_HIGH
_STRING_CLASS[list(b'"')] = _S_QUOTE
_STRING_CLASS[list(b"\\")] = _S_ESCAPE
_ESCAPABLE = np.zeros(256, np.uint8)  # what may follow a backslash (\u's hex digits: Arrow checks)
_ESCAPABLE[list(b'"\\/bfnrtu')] = 1


@njit(cache=True, inline="always")
def _string_end(buf, j, size):  # pragma: no cover - compiled
    """(index of the closing quote, has escapes or a DEL byte) of the string whose body starts
    at j; -1 if the line holds no valid end (control byte, bad UTF-8, line end)."""
    string_class = _STRING_CLASS
    escaped = False
    while j < size:
        s = string_class[buf[j]]
        if s == _S_PLAIN:
            j += 1
        elif s == _S_QUOTE:
            return j, escaped
        elif s == _S_ESCAPE:  # the escaped byte cannot end the string
            if j + 1 >= size or _ESCAPABLE[buf[j + 1]] == 0:  # never step over a line end
                return -1, escaped
            escaped = True
            j += 2
        elif s == _S_HIGH:
            w = utf8_width(buf, j, size)
            if w == 0:
                return -1, escaped
            j += w
        elif s == _S_DEL:
            escaped = True
            j += 1
        else:
            return -1, escaped
    return -1, escaped


@njit(cache=True)
def _hex4(buf, k):  # pragma: no cover - compiled
    """The value of the 4 hex digits at buf[k:k+4] (Arrow checks they are hex)."""
    v = 0
    for m in range(k, k + 4):
        c = buf[m]
        d = c - 48 if c <= 57 else (c | 32) - 87
        v = v * 16 + d
    return v


@njit(cache=True)
def _escapes_control(buf, lo, hi):  # pragma: no cover - compiled
    """Does the string body buf[lo:hi] hold a control character (U+0000-U+001F, U+007F), raw
    (only DEL can be: a raw C0 byte ends the scan) or escaped?"""
    k = lo
    while k < hi:
        if buf[k] == 0x7F:
            return True
        if buf[k] != 92:  # '\\'
            k += 1
            continue
        c = buf[k + 1]
        if c == 98 or c == 102 or c == 110 or c == 114 or c == 116:  # b f n r t
            return True
        if c == 117:  # 'u'
            if k + 6 > hi:
                return True  # malformed: let the per-record path say so
            v = _hex4(buf, k + 2)
            if v < 0x20 or v == 0x7F:
                return True
            k += 6
            continue
        k += 2
    return False


@njit(cache=True)
def _refused(buf, lo, i, size):  # pragma: no cover - compiled
    """`_scan_line`'s answer for a refused line starting at lo, read up to i."""
    while i < size and buf[i] != 10:
        i += 1
    # Too short to be overwritten with "{}" in place: the caller swaps the value itself.
    return (LINE_SHORT if i - lo < 2 else LINE_BAD), -1, -1, i


# Top-level members the scanner tracks, in `_KEYS` order: string fields, the number,
# integer fields, then meta and _control.
_KEYS = (b"symbol", b"provider", b"id", b"score", b"ts", b"ingest_ts", b"polarity", b"meta", b"_control")
_F_ID, _F_SCORE, _F_TS, _F_META, _F_CONTROL = 2, 3, 4, 7, 8
_KEY_BYTES = np.frombuffer(b"".join(_KEYS), np.uint8)
_KEY_OFFSETS = np.cumsum([0] + [len(k) for k in _KEYS]).astype(np.int64)
MAX_INT_DIGITS = 18  # always inside int64, which Arrow needs


@njit(cache=True, inline="always")
def _fits(c, field):  # pragma: no cover - compiled
    """Can a value starting with byte c be what Arrow's column for `field` takes (or null)?"""
    if c == 110:  # 'n'ull
        return True
    if field < _F_SCORE:
        return c == 34  # '"'
    return c == 45 or 48 <= c <= 57  # '-' or a digit


@njit(cache=True)
def _scan_line(buf, lo, size, max_depth, key_bytes, key_offsets):  # pragma: no cover - compiled
    """(status, meta value start, meta value end, line end) of the line starting at lo;
    meta -1, -1 without one. The line ends at the next newline or at `size`.

    Trusts Arrow for the JSON grammar and only tracks what Arrow gets wrong or cannot say
    (see the module docstring), plus the value types of the schema fields, so that a type
    mismatch ("ts": "abc") is refused here instead of failing Arrow's whole chunk."""
    token_class = _TOKEN_CLASS
    i = lo
    while i < size and token_class[buf[i]] == _BLANK:
        i += 1
    if i >= size or buf[i] != 123:  # '{'
        return _refused(buf, lo, i, size)
    depth = 0
    expect_key = False  # at depth 1, the next string is a member name
    field = -1  # `_KEYS` index of the current top-level member
    seen = 0  # bit set of the `_KEYS` met so far
    value_next = False  # the next token starts the value of `field`
    int_digits = -1  # digits of the integer-field value being read, -1 outside one
    meta_lo = -1
    meta_hi = -1
    last_end = i  # one past the last non-blank byte seen
    while i < size:
        c = buf[i]
        cls = token_class[c]
        if cls == _BLANK:
            i += 1
            continue
        if value_next:
            value_next = False
            if field == _F_META:
                meta_lo = i
            elif not _fits(c, field):
                break
            elif (
                field == _F_SCORE
                and c == 45
                and i + 2 < size
                and buf[i + 1] == 48
                and token_class[buf[i + 2]] != _PLAIN
            ):
                break  # the int -0: Arrow reads -0.0, orjson 0 (so 0.0), and tick_id hashes repr(score)
            elif field >= _F_TS:
                int_digits = 0
        if cls == _PLAIN:
            if int_digits >= 0 and depth == 1:
                if c == 46 or c == 101 or c == 69:  # '.', 'e', 'E': Arrow's int64 refuses a float
                    break
                if 48 <= c <= 57:
                    int_digits += 1
                    if int_digits > MAX_INT_DIGITS:
                        break
            i += 1
            last_end = i
            continue
        if cls == _QUOTE:
            j, escaped = _string_end(buf, i + 1, size)
            if j < 0:
                break
            if depth == 1 and expect_key:
                expect_key = False
                if escaped:  # a spelling like "\u005fcontrol" would hide the key from us
                    break
                field = member_index(buf, i + 1, j, key_bytes, key_offsets)
                if field == _F_CONTROL:
                    break
                if field >= 0:
                    if seen & (1 << field):  # duplicate: Arrow refuses, orjson keeps the last
                        break
                    seen |= 1 << field
            elif depth == 1 and field == _F_ID and escaped and _escapes_control(buf, i + 1, j):
                break  # records._tick refuses ids holding control characters
            i = j + 1
            last_end = i
            continue
        if cls == _OPEN:
            depth += 1
            if depth > max_depth:
                break
            if depth == 1:
                expect_key = True
        elif cls == _CLOSE or cls == _COMMA:
            if depth == 1:
                if field == _F_META and meta_lo >= 0 and meta_hi < 0:
                    meta_hi = last_end
                field, int_digits = -1, -1
                expect_key = cls == _COMMA
            if cls == _CLOSE:
                depth -= 1
                if depth == 0:
                    end = i + 1
                    while end < size and token_class[buf[end]] == _BLANK:
                        end += 1
                    if end < size and buf[end] != 10:
                        break
                    return LINE_OK, meta_lo, meta_hi, end
        elif cls == _COLON:
            if depth == 1 and field >= 0:
                value_next = True
        else:  # refused byte, or the line ends inside the object
            break
        i += 1
        last_end = i
    return _refused(buf, lo, i, size)


@njit(cache=True)
def _scan_lines(buf, n, max_depth, key_bytes, key_offsets):  # pragma: no cover - compiled
    """Per line of the newline-joined blob: start offset (n + 1 entries, line i spans
    starts[i] .. starts[i + 1] - 2), status, meta span; plus the line count (stops counting
    past n) and the longest line."""
    starts = np.empty(n + 1, np.int64)
    status = np.empty(n, np.int8)
    meta_lo = np.empty(n, np.int64)
    meta_hi = np.empty(n, np.int64)
    size = buf.size
    pos = 0
    lines = 0
    longest = 0
    while lines < n:
        starts[lines] = pos
        status[lines], meta_lo[lines], meta_hi[lines], end = _scan_line(
            buf, pos, size, max_depth, key_bytes, key_offsets
        )
        longest = max(longest, end - pos)
        lines += 1
        pos = end + 1
        if end >= size:
            break
    if pos <= size:  # more newlines than n - 1
        lines += 1
    starts[n] = size + 1
    return starts, status, meta_lo, meta_hi, lines, longest


@njit(cache=True)
def _blank_lines(buf, starts, bad):  # pragma: no cover - compiled
    """Overwrite each bad line (>= 2 bytes) with '{}' and spaces: an all-null row, same length."""
    for i in range(bad.size):
        lo, hi = starts[i], starts[i + 1] - 1
        if bad[i] and hi - lo >= 2:
            buf[lo] = 123
            buf[lo + 1] = 125
            for k in range(lo + 2, hi):
                buf[k] = 32


@njit(cache=True)
def _gather_spans(buf, lo, hi):  # pragma: no cover - compiled
    """Byte spans buf[lo[i]:hi[i]] as Arrow large_binary (int64 offsets, data)."""
    offsets = np.empty(lo.size + 1, np.int64)
    offsets[0] = 0
    for i in range(lo.size):
        offsets[i + 1] = offsets[i] + (hi[i] - lo[i])
    data = np.empty(offsets[-1], np.uint8)
    for i in range(lo.size):
        data[offsets[i] : offsets[i + 1]] = buf[lo[i] : hi[i]]
    return offsets, data


# ---------------------------------------------------------------------------
# framing and parsing


@dataclass(frozen=True, slots=True)
class _Lines:
    blob: bytes | bytearray  # the newline-joined values, refused lines blanked
    starts: np.ndarray
    framed: np.ndarray  # bool: the line may go to Arrow
    meta_lo: np.ndarray
    meta_hi: np.ndarray
    longest: int


def _scan(blob: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    return _scan_lines(np.frombuffer(blob, np.uint8), n, MAX_DEPTH, _KEY_BYTES, _KEY_OFFSETS)


def _frame(values: Sequence[bytes], max_record_bytes: int = MAX_RECORD_BYTES) -> _Lines | None:
    n = len(values)
    blob = values.joined() if isinstance(values, Lines) else b"\n".join(values)
    starts, status, meta_lo, meta_hi, lines, longest = _scan(blob, n)
    if lines != n or (status == LINE_SHORT).any():
        # Only now look at single values: those that would break the framing become "{}".
        unframable = [len(v) < 2 or b"\n" in v for v in values]
        blob = b"\n".join(b"{}" if bad else v for v, bad in zip(values, unframable))
        starts, status, meta_lo, meta_hi, lines, longest = _scan(blob, n)
        status[np.asarray(unframable)] = LINE_BAD
        if lines != n:  # cannot happen now that no value holds a newline; if it did, trust no line
            return None
    framed = status == LINE_OK
    if longest > max_record_bytes:  # too_large: decode_record's to refuse, and never Arrow's to parse
        sizes = np.diff(starts) - 1
        framed &= sizes <= max_record_bytes
        longest = int(sizes[framed].max(initial=0))
    if not framed.all():
        blanked = bytearray(blob)
        _blank_lines(np.frombuffer(blanked, np.uint8), starts, ~framed)
        return _Lines(blanked, starts, framed, meta_lo, meta_hi, longest)
    return _Lines(blob, starts, framed, meta_lo, meta_hi, longest)


def _read_range(buf: pa.Buffer, starts: np.ndarray, lo: int, hi: int, block: int) -> pa.Table | None:
    a, b = int(starts[lo]), int(starts[hi]) - 1
    # Threads only pay off across blocks: waking Arrow's pool costs milliseconds.
    read_options = pj.ReadOptions(block_size=block, use_threads=b - a > block)
    try:
        table = pj.read_json(
            pa.BufferReader(buf.slice(a, b - a)), read_options=read_options, parse_options=_PARSE_OPTIONS
        )
    except (pa.ArrowException, ValueError):  # any failure: the rows go to the slow path
        return None
    return table if table.num_rows == hi - lo else None


def _read(lines: _Lines) -> tuple[pa.Table, np.ndarray]:
    """All n lines as a `_READ_SCHEMA` table by Arrow's JSON reader (null rows where parsing
    failed) and the mask of rows Arrow parsed."""
    n = lines.framed.size
    buf = pa.py_buffer(lines.blob)
    block = max(_BLOCK_BYTES, 2 * lines.longest + 2)
    parsed = np.zeros(n, bool)
    parts: list[pa.Table] = []
    todo = [(0, n)]
    while todo:  # depth-first, so parts come out in row order
        lo, hi = todo.pop()
        worth = lines.framed[lo:hi].any()
        table = _read_range(buf, lines.starts, lo, hi, block) if worth else None
        if table is None and worth and hi - lo > MIN_BISECT_ROWS:
            mid = (lo + hi) // 2
            todo += [(mid, hi), (lo, mid)]
            continue
        if table is None:  # rows for the slow path
            table = pa.table([pa.nulls(hi - lo, f.type) for f in _READ_SCHEMA], schema=_READ_SCHEMA)
        else:
            parsed[lo:hi] = True
        parts.append(table)
    whole = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    return whole.combine_chunks(), parsed & lines.framed


# ---------------------------------------------------------------------------
# validation


def _ints(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as 0, null mask)."""
    return _filled(col, 0), _nulls(col)


def _filled(col: pa.ChunkedArray | pa.Array, fill: Any) -> np.ndarray:
    """The column as numpy, nulls as `fill` (no compute call for a column without nulls)."""
    if len(col) and col.null_count == 0:
        return col.to_numpy(zero_copy_only=False)
    return pc.fill_null(col, fill).to_numpy(zero_copy_only=False)


def _nulls(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if col.null_count == 0:
        return np.zeros(len(col), bool)
    return pc.is_null(col).to_numpy(zero_copy_only=False)


def _valid_names(col: pa.ChunkedArray, field: str, pattern) -> np.ndarray:
    """Per row: a valid `field` by `records.valid_name`, checked once per distinct value."""
    enc = pc.dictionary_encode(col).combine_chunks()
    names = enc.dictionary.to_pylist()
    known = valid_names(set(names), pattern)
    valid = (
        np.array([s in known for s in names] + [False]) if len(known) < len(names) else np.ones(len(names) + 1, bool)
    )
    valid[-1] = False  # null
    codes = _filled(enc.indices, len(enc.dictionary))
    return valid[codes]


def _meta_text(raw: bytes) -> str | None:
    """`_tick`'s meta rule on the raw JSON of a meta value: the stored text, or None if refused."""
    try:
        return meta_text(orjson.loads(raw))
    except (orjson.JSONDecodeError, InvalidField):
        return None


def _meta(meta: _MetaSpans, rows_ok: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """(per-row code into `texts`, texts, per-row meta valid). Rows without meta get "{}"."""
    n = rows_ok.size
    rows = np.flatnonzero(rows_ok & (meta.lo >= 0))
    valid = np.ones(n, bool)
    if rows.size == 0:
        return np.zeros(n, np.int64), pa.array(["{}"], pa.string()), valid
    offsets, data = _gather_spans(np.frombuffer(meta.blob, np.uint8), meta.lo[rows], meta.hi[rows])
    spans = pa.Array.from_buffers(pa.large_binary(), rows.size, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    enc = pc.dictionary_encode(spans)
    texts = [_meta_text(raw) for raw in enc.dictionary.to_pylist()]
    codes = np.full(n, len(texts), np.int64)  # the last text is the default "{}"
    codes[rows] = enc.indices.to_numpy(zero_copy_only=False)
    valid[rows] = np.array([t is not None for t in texts])[codes[rows]]
    return codes, pa.array([t or "{}" for t in texts] + ["{}"], pa.string()), valid


def objects_as_json(objects: Sequence[Any]) -> tuple[list[bytes], np.ndarray]:
    """Dict records (HTTP, the simulator, Parquet rows) as the compact JSON `decode_ticks` reads,
    and the mask of those that have one: orjson without `default`, so anything JSON has no
    exact spelling for (numpy values, datetimes, non-str keys, ints past 64 bits, lone
    surrogates) raises and the record stays a dict for the per-record path. The JSON is what
    `records._parse` measures a dict by (`too_large`), byte for byte."""
    dumps = orjson.dumps
    try:
        values = [dumps(o) if o.__class__ is dict else b"{}" for o in objects]
        usable = np.fromiter((o.__class__ is dict for o in objects), bool, len(objects))
    except (TypeError, orjson.JSONEncodeError):
        values, usable = [], np.zeros(len(objects), bool)
        for k, o in enumerate(objects):
            try:
                values.append(dumps(o) if o.__class__ is dict else b"{}")
                usable[k] = o.__class__ is dict
            except (TypeError, orjson.JSONEncodeError):
                values.append(b"{}")
    return values, usable


_CONTROL = r"[\x00-\x1f\x7f]"  # records._CONTROL_CHARS_RE, which the scanner's id rule follows


def ids_with_control_chars(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per row: does the (string) id hold a control character (`records._CONTROL_CHARS_RE`)?
    UTF-8 spells U+0000-U+001F and U+007F as those bytes and no other way: a look at the data
    buffer clears a batch's ids at once, and the regex runs only when a byte says it may be needed."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    data = ids.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    if not ((raw < 0x20) | (raw == 0x7F)).any():
        return np.zeros(len(ids), bool)
    return pc.fill_null(pc.match_substring_regex(ids, _CONTROL), False).to_numpy(zero_copy_only=False)


# Dict ticks read as columns straight from the dicts (`decode_objects`): the tick fields but
# meta, each of one exact JSON type: str names and id, int times and polarity, float or int score.
_DICT_FIELDS = ("symbol", "ts", "score", "provider", "id", "ingest_ts", "polarity")  # _READ_SCHEMA's order
_DICT_KEYS = frozenset(_DICT_FIELDS)
_INT_BOUND = 2**62  # ints the int64 columns (and the sums of the checks) hold; larger: the JSON path's
_EXACT_INT = 2**53  # int scores float() keeps exactly (larger: refused, but by the JSON path)
# An upper bound of the compact JSON of such a dict (7 member names, a 32-character ASCII
# symbol, a 64-character provider, 128 code points of id at most 4 bytes each (a quote or
# backslash: 2), ints below 2**62, a float's repr): `decode_record`'s `too_large` rule cannot
# refuse one when the limit is at least this.
MAX_DICT_TICK_JSON = 1024


def _exact_ints(column: Sequence[Any], none: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 values, 0 for None; mask of the exact ints (not bools) below 2**62 in magnitude,
    and of the Nones when `none`; mask of the Nones)."""
    kinds = set(map(type, column))
    if none and kinds == {type(None)}:  # a field no dict has (polarity, often)
        return np.zeros(len(column), np.int64), np.ones(len(column), bool), np.ones(len(column), bool)
    nulls = np.array([v is None for v in column], bool) if type(None) in kinds else np.zeros(len(column), bool)
    bound = _INT_BOUND
    if kinds <= ({int, type(None)} if none else {int}):
        filled = [0 if v is None else v for v in column] if nulls.any() else column
        try:
            values = np.array(filled, np.int64)
        except OverflowError:  # an int beyond int64: entry by entry below
            pass
        else:
            typed = (values > -bound) & (values < bound)
            return values, typed, nulls
    typed = np.array([(v.__class__ is int and -bound < v < bound) or (none and v is None) for v in column], bool)
    values = np.array([v if t and v is not None else 0 for v, t in zip(column, typed.tolist(), strict=True)], np.int64)
    return values, typed, nulls


def _scores(column: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(float64 scores, mask of the floats and the ints float() keeps exactly; not bools)."""
    kinds = set(map(type, column))
    if kinds == {float}:
        return np.array(column, np.float64), np.ones(len(column), bool)
    typed = np.array(
        [v.__class__ is float or (v.__class__ is int and -_EXACT_INT < v < _EXACT_INT) for v in column], bool
    )
    return np.array([v if t else 0.0 for v, t in zip(column, typed.tolist(), strict=True)], np.float64), typed


def _same_keys_columns(objects: Sequence[dict[str, Any]]) -> list[list[Any]] | None:
    """The `_DICT_FIELDS` columns (None where a dict has none) when every dict has the first
    one's keys, all tick fields (a burst as HTTP hands it over): one C call reads a dict's
    values, instead of a lookup per field and dict. None otherwise."""
    keys = tuple(objects[0])
    if not keys or not _DICT_KEYS.issuperset(keys) or set(map(len, objects)) != {len(keys)}:
        return None
    try:  # as many keys as the first dict and all of its: the same keys (in any order)
        values = (
            zip(*map(itemgetter(*keys), objects), strict=True) if len(keys) > 1 else [[o[keys[0]] for o in objects]]
        )
        found = dict(zip(keys, map(list, values), strict=True))
    except KeyError:
        return None
    return [found[name] if name in found else [None] * len(objects) for name in _DICT_FIELDS]


def _listed_names_valid(values: list[str | None], pattern: re.Pattern[str]) -> np.ndarray:
    """`_valid_names` of a column still in Python (strs, None for none): no Arrow encoding."""
    distinct = set(values)
    none = None in distinct
    distinct.discard(None)
    known = valid_names(cast(set[str], distinct), pattern)  # (None discarded)
    if not none and len(known) == len(distinct):
        return np.ones(len(values), bool)
    return np.array([v in known for v in values], bool)


def _dict_columns(objects: Sequence[dict[str, Any]]) -> tuple[np.ndarray, pa.Table, np.ndarray] | None:
    """(mask of the dicts read here, `_READ_SCHEMA` table of all rows — the others' rows hold
    whatever, never read —, per row: valid symbol and provider names); None when none is."""
    columns = _same_keys_columns(objects)
    if columns is not None:
        plain = np.ones(len(objects), bool)
    else:
        # keys() <= set: C loops, no frame (nor temporary set) per dict
        plain = np.fromiter(map(le, map(dict.keys, objects), repeat(_DICT_KEYS)), bool, len(objects))
        if not plain.any():
            return None
        # A column per field, None where a dict has none (a not-plain dict's values are never read)
        columns = [list(map(dict.get, objects, repeat(name))) for name in _DICT_FIELDS]
    symbol, ts, score, provider, ids, ingest, polarity = columns
    mine = plain.copy()
    names = []
    for column in (symbol, provider, ids):
        typed = (
            np.ones(len(column), bool)
            if set(map(type, column)) == {str}
            else np.array([v.__class__ is str or (column is ids and v is None) for v in column], bool)
        )
        mine &= typed
        names.append(
            [v if t else None for v, t in zip(column, typed.tolist(), strict=True)] if not typed.all() else column
        )
    ts_values, ts_typed, _ = _exact_ints(ts, False)
    ingest_values, ingest_typed, ingest_null = _exact_ints(ingest, True)
    polarity_values, polarity_typed, polarity_null = _exact_ints(polarity, True)
    score_values, score_typed = _scores(score)
    mine &= ts_typed & ingest_typed & polarity_typed & score_typed
    if not mine.any():
        return None
    table = pa.Table.from_arrays(
        [
            pa.array(names[0], pa.string()),
            pa.array(ts_values),
            pa.array(score_values),
            pa.array(names[1], pa.string()),
            pa.array(names[2], pa.string()),
            pa.array(ingest_values, mask=ingest_null),
            pa.array(polarity_values, mask=polarity_null),
        ],
        schema=_READ_SCHEMA,
    )
    return mine, table, _listed_names_valid(names[0], SYMBOL_RE) & _listed_names_valid(names[1], PROVIDER_RE)


def decode_objects(
    objects: Sequence[dict[str, Any]],
    hints: np.ndarray,
    *,
    now_ms: int,
    pos_threshold: float = 0.0,
    keys: Sequence[bytes | None] | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_future_ms: int = MAX_FUTURE_MS,
    wall_ms: int | np.ndarray | None = None,
) -> FastTicks:
    """`decode_ticks` of dict records (HTTP, the simulator): as `decode_ticks(objects_as_json(
    objects)…, objects=objects)` would, but the plain dicts — tick fields but meta, each of
    one exact JSON type (`_dict_columns`) — are read as columns straight from the dicts, with
    no JSON written or read (the same checks then: `check_columns`, `assemble_ticks`); the
    others take the JSON way, and a dict JSON cannot spell is left to the per-record path."""
    n = len(objects)
    hints = np.asarray(hints, np.int64)
    rows = _RowContext(hints, keys, wall_ms, objects)
    try:
        read = _dict_columns(objects) if n and max_record_bytes >= MAX_DICT_TICK_JSON else None
    except (pa.ArrowException, UnicodeError, ValueError, TypeError):  # a lone surrogate, say: JSON's way
        read = None
    if read is None:
        return _json_objects(objects, rows, now_ms, pos_threshold, max_record_bytes, max_future_ms)
    mine, cols, names_valid = read
    ok = mine & ~ids_with_control_chars(cols["id"])
    checked = check_columns(
        cols, ok, hints, keys=keys, max_future_ms=max_future_ms, wall_ms=wall_ms, names_valid=names_valid
    )
    fast = assemble_ticks(cols, checked, np.zeros(n, np.int64), pa.array(["{}"], pa.string()), pos_threshold)
    if mine.all():
        return fast
    rest = np.flatnonzero(~mine)
    slow = _json_objects(
        [objects[i] for i in rest.tolist()], rows.pick(rest), now_ms, pos_threshold, max_record_bytes, max_future_ms
    )
    return _merged(n, (np.arange(n), fast), (rest, slow))


def _json_objects(
    objects: Sequence[dict[str, Any]],
    rows: _RowContext,
    now_ms: int,
    pos_threshold: float,
    max_record_bytes: int,
    max_future_ms: int,
) -> FastTicks:
    """`decode_ticks` of dicts by their JSON (`objects_as_json`); not-ok where JSON cannot spell one."""
    n = len(objects)
    values, fine = objects_as_json(objects)
    picked = np.flatnonzero(fine)
    if not picked.size:
        return _none_ok(np.zeros(n, bool))
    if picked.size < n:
        rows = rows.pick(picked)
        values = [values[i] for i in picked.tolist()]
    hints, keys, wall_ms, objs = rows
    fast = decode_ticks(
        values,
        hints,
        now_ms=now_ms,
        pos_threshold=pos_threshold,
        keys=keys,
        max_record_bytes=max_record_bytes,
        max_future_ms=max_future_ms,
        wall_ms=wall_ms,
        objects=objs,
    )
    return fast if picked.size == n else _merged(n, (picked, fast))


def _null_but_set(objects: Sequence[dict[str, Any]], rows: np.ndarray, field: str) -> np.ndarray:
    """Per row in `rows`: does the dict hold a value other than None under `field`?
    orjson writes NaN and ±Infinity as null, so such a field reads as missing here while
    `decode_record` refuses the dict: those rows are the per-record path's."""
    return np.array([objects[r].get(field) is not None for r in rows.tolist()], bool)


def _keys_match(symbols: pa.ChunkedArray, keys: Sequence[bytes | None]) -> np.ndarray:
    """Per row: no Kafka key, or the key is the symbol's UTF-8 bytes (records._check_record)."""
    same = pc.equal(symbols.cast(pa.binary()), pa.chunked_array([pa.array(keys, pa.binary())]))
    return pc.fill_null(same, True).to_numpy(zero_copy_only=False) | pc.is_null(symbols).to_numpy(zero_copy_only=False)


def _none_ok(ok: np.ndarray) -> FastTicks:
    return FastTicks(ok, TICK_SCHEMA.empty_table(), np.empty(0, np.int64))


def decode_ticks(
    values: Sequence[bytes],
    hints: np.ndarray,
    *,
    now_ms: int,
    pos_threshold: float = 0.0,
    keys: Sequence[bytes | None] | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_future_ms: int = MAX_FUTURE_MS,
    wall_ms: int | np.ndarray | None = None,
    objects: Sequence[dict[str, Any]] | None = None,
    dicts: bool = False,
) -> FastTicks:
    """Decode the clean ticks among raw messages `values`, column-wise.

    `hints[i]`: value i's ingest time (Kafka timestamp, ms) or -1 for none; `keys[i]`: its
    Kafka key (None: none). Row i matches `decode_record(values[i], now_ms=hint if hint >= 0
    else now_ms, default_ingest="now" if hint >= 0 else "event", key=keys[i], …)` with the
    same `pos_threshold`, `max_record_bytes`, `max_future_ms` and `wall_ms` whenever `ok[i]`;
    `now_ms` itself only reaches refusals, which are all left to that per-record path.

    `wall_ms` may be one value per row (a large value exempts a row, as the simulator is).
    `objects`: when `values` are `objects_as_json(objects)`, the dicts themselves, so that a
    row whose optional field (polarity, ingest_ts, id, meta) reads null only because orjson
    wrote a NaN as null is left to the per-record path, which refuses it.
    `dicts`: `values` are dict records themselves (`decode_objects`: no JSON for plain ones).
    """
    n = len(values)
    hints = np.asarray(hints, np.int64)
    if hints.shape != (n,):
        raise ValueError(f"hints must have one entry per value ({n}). Got shape {hints.shape} instead.")
    if keys is not None and len(keys) != n:
        raise ValueError(f"keys must have one entry per value ({n}). Got {len(keys)} instead.")
    if dicts:  # `values` are dict records themselves (all of them dicts)
        return decode_objects(
            values,  # type: ignore[arg-type]
            hints,
            now_ms=now_ms,
            pos_threshold=pos_threshold,
            keys=keys,
            max_record_bytes=max_record_bytes,
            max_future_ms=max_future_ms,
            wall_ms=wall_ms,
        )
    rules = _Rules(pos_threshold, max_record_bytes, max_future_ms)
    rows = _RowContext(hints, keys, wall_ms, objects)
    front = _plain_front(values, max_record_bytes) if n else None
    if front is None or not front.plain.any():  # nothing plain: the scanner and Arrow read them all
        return _decode_framed(values, rows, rules)
    meta, plain, cols = front
    if plain.all():
        return _decode_read(meta, cols, np.ones(n, bool), rows, rules)
    # Some plain, some not: each part its own way, then back in input order.
    mine, rest = np.flatnonzero(plain), np.flatnonzero(~plain)
    fast = _decode_read(meta, cols, np.ones(mine.size, bool), rows.pick(mine), rules)
    slow = _decode_framed([values[i] for i in rest.tolist()], rows.pick(rest), rules)
    return _merged(n, (mine, fast), (rest, slow))


@dataclass(frozen=True, slots=True)
class _Rules:
    pos_threshold: float
    max_record_bytes: int
    max_future_ms: int


class _RowContext(NamedTuple):
    """What `decode_ticks` knows of each row besides its bytes (see its doc)."""

    hints: np.ndarray
    keys: Sequence[bytes | None] | None
    wall_ms: int | np.ndarray | None
    objects: Sequence[dict[str, Any]] | None

    def pick(self, rows: np.ndarray) -> _RowContext:
        """The context of the rows `rows` (a wall clock for all rows stays as it is)."""
        wall = self.wall_ms
        if isinstance(wall, np.ndarray) and wall.ndim:
            wall = wall[rows]
        keys, objects = self.keys, self.objects
        picks = rows.tolist()
        return _RowContext(
            self.hints[rows],
            None if keys is None else [keys[i] for i in picks],
            wall,
            None if objects is None else [objects[i] for i in picks],
        )


def _merged(n: int, *parts: tuple[np.ndarray, FastTicks]) -> FastTicks:
    """FastTicks of the rows `rows` of each part, as one, in row order."""
    ok = np.zeros(n, bool)
    for rows, part in parts:
        ok[rows] = part.ok
    accepted = [(rows[part.ok], part) for rows, part in parts if part.table.num_rows]
    if not accepted:
        return _none_ok(ok)
    if len(accepted) == 1:
        return FastTicks(ok, accepted[0][1].table, accepted[0][1].id_hash)
    order = np.argsort(np.concatenate([r for r, _ in accepted]), kind="stable")
    table = pa.concat_tables([p.table for _, p in accepted]).take(pa.array(order)).combine_chunks()
    return FastTicks(ok, table, np.concatenate([p.id_hash for _, p in accepted])[order])


class _MetaSpans(NamedTuple):
    """Where each row's raw meta value sits in `blob` (-1, -1: none)."""

    blob: bytes | bytearray
    lo: np.ndarray
    hi: np.ndarray


class _Front(NamedTuple):
    meta: _MetaSpans  # the plain rows', in their order
    plain: np.ndarray
    cols: pa.Table  # `_READ_SCHEMA`, the plain rows


def _plain_front(values: Sequence[bytes], max_record_bytes: int) -> _Front:
    """The plain lines (dataflows/json_fields.py) read at once, no scanner and no Arrow."""
    n = len(values)
    if isinstance(values, Lines):
        blob, sizes = values.joined(), values.ends - values.starts
    else:
        blob, sizes = b"\n".join(values), np.fromiter(map(len, values), np.int64, n)
    # Line i spans starts[i] .. starts[i + 1] - 2. A value holding a newline is not seen as
    # two lines here: the walk refuses a raw newline (outside a string, or in one), so that
    # value's line is not plain, and `_frame` deals with it.
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(sizes + 1, out=starts[1:])
    walkable = sizes <= max_record_bytes  # too_large: decode_record's to refuse
    plain, cols, meta_lo, meta_hi = read_plain(blob, starts, walkable, _READ_SCHEMA)
    return _Front(_MetaSpans(blob, meta_lo, meta_hi), plain, cols)


def _decode_framed(values: Sequence[bytes], rows: _RowContext, rules: _Rules) -> FastTicks:
    """`decode_ticks` by the scanner (`_frame`) and Arrow's JSON reader (`_read`)."""
    n = len(values)
    lines = _frame(values, rules.max_record_bytes) if n else None
    if lines is None:
        return _none_ok(np.zeros(n, bool))
    cols, ok = _read(lines)
    return _decode_read(_MetaSpans(lines.blob, lines.meta_lo, lines.meta_hi), cols, ok, rows, rules)


def _decode_read(meta: _MetaSpans, cols: pa.Table, ok: np.ndarray, rows: _RowContext, rules: _Rules) -> FastTicks:
    """The checks and the FastTicks of rows read (`cols`, `ok`; `meta` row by row)."""
    hints, keys, wall_ms, objects = rows
    max_future_ms, pos_threshold = rules.max_future_ms, rules.pos_threshold
    checked = check_columns(cols, ok, hints, keys=keys, max_future_ms=max_future_ms, wall_ms=wall_ms)
    ok = checked.ok
    meta_codes, meta_texts, meta_valid = _meta(meta, ok)
    ok &= meta_valid
    if objects is not None:  # dicts: a field JSON spells null must be None (or absent) in the dict
        meta_short = (meta.hi - meta.lo) == 4  # null (or a 4-byte object/string: checked too)
        for name, null in (
            ("polarity", checked.polarity_null),
            ("ingest_ts", checked.ingest_null),
            ("id", checked.id_null),
            ("meta", meta_short),
        ):
            maybe = np.flatnonzero(ok & null)
            if maybe.size:
                ok[maybe[_null_but_set(objects, maybe, name)]] = False
    return assemble_ticks(cols, checked, meta_codes, meta_texts, pos_threshold)


@dataclass(frozen=True, slots=True)
class CheckedColumns:
    """`check_columns`' verdict: `ok` (narrowed in place by later checks, e.g. meta) and the
    numeric columns as numpy, nulls filled (ingest_ts already the one each row gets)."""

    ok: np.ndarray
    ts: np.ndarray
    score: np.ndarray
    ingest: np.ndarray
    ingest_null: np.ndarray
    polarity: np.ndarray
    polarity_null: np.ndarray
    id_null: np.ndarray


def check_columns(
    cols: pa.Table,
    ok: np.ndarray,
    hints: np.ndarray,
    *,
    keys: Sequence[bytes | None] | None = None,
    max_future_ms: int = MAX_FUTURE_MS,
    wall_ms: int | np.ndarray | None = None,
    names_valid: np.ndarray | None = None,
) -> CheckedColumns:
    """`_tick`'s and `_check_record`'s rules, column-wise, on a `_READ_SCHEMA` table whose
    values are the record's own (JSON read by Arrow, or Parquet columns: dataflows/arrow_ticks.py);
    all but meta, which each caller reads its own way. `names_valid`: per row, are the symbol
    and provider valid names, when the caller knows already (dict columns: `_listed_names_valid`)."""
    ts, ts_null = _ints(cols["ts"])
    ok &= ~ts_null & (ts >= MIN_TS_MS) & (ts <= MAX_TS_MS)
    score = _filled(cols["score"], np.nan)
    ok &= (score >= -1.0) & (score <= 1.0)  # also refuses NaN (null) and the infinities
    ingest, ingest_null = _ints(cols["ingest_ts"])
    ok &= ingest_null | ((ingest >= MIN_TS_MS) & (ingest <= MAX_TS_MS))
    # the ingest_ts each row gets (records._ingest), and `future` against it and the wall clock
    ingest = np.where(ingest_null, np.where(hints >= 0, hints, ts), ingest)
    ok &= ts - ingest <= max_future_ms
    if wall_ms is not None:
        ok &= ingest - np.asarray(wall_ms, np.int64) <= max_future_ms
    if keys is not None:
        ok &= _keys_match(cols["symbol"], keys)
    polarity, polarity_null = _ints(cols["polarity"])
    ok &= polarity_null | ((polarity >= -1) & (polarity <= 1))
    id_chars, id_null = _ints(pc.utf8_length(cols["id"]))
    ok &= id_null | ((id_chars >= 1) & (id_chars <= MAX_ID_CHARS))
    if names_valid is None:
        names_valid = _valid_names(cols["symbol"], "symbol", SYMBOL_RE) & _valid_names(
            cols["provider"], "provider", PROVIDER_RE
        )
    ok &= names_valid
    return CheckedColumns(ok, ts, score, ingest, ingest_null, polarity, polarity_null, id_null)


def assemble_ticks(
    cols: pa.Table, checked: CheckedColumns, meta_codes: np.ndarray, meta_texts: pa.Array, pos_threshold: float
) -> FastTicks:
    """The FastTicks of the rows `checked.ok` keeps: polarity derived where missing, ids made
    where missing (`records.tick_id`), meta row i `meta_texts[meta_codes[i]]`."""
    ok = checked.ok
    if not ok.any():
        return _none_ok(ok)

    every = bool(ok.all())  # (a live burst's: no filtering)
    keep = pa.array(ok)
    ts, score = checked.ts[ok], checked.score[ok]
    derived = np.where(score > pos_threshold, 1, np.where(score < -pos_threshold, -1, 0))
    polarity = np.where(checked.polarity_null[ok], derived, checked.polarity[ok]).astype(np.int8)
    ingest = checked.ingest[ok]
    symbol, provider, ids = (
        (cols[name] if every else cols[name].filter(keep)).combine_chunks() for name in ("symbol", "provider", "id")
    )
    missing = checked.id_null[ok]
    if missing.any():
        made = [
            tick_id(p, s, t, x)
            for p, s, t, x in zip(
                provider.filter(missing).to_pylist(),
                symbol.filter(missing).to_pylist(),
                ts[missing].tolist(),
                score[missing].tolist(),
            )
        ]
        ids = pc.replace_with_mask(ids, pa.array(missing), pa.array(made, pa.string()))
    meta = pc.take(meta_texts, pa.array(meta_codes[ok]))
    table = pa.Table.from_arrays(
        [ids, symbol, pa.array(ts), pa.array(score), pa.array(polarity), provider, meta, pa.array(ingest)],
        schema=TICK_SCHEMA,
    )
    return FastTicks(ok, table, string_hash(ids))


# ---------------------------------------------------------------------------
# bench: python -m dataflows.tick_decode


def bench(n: int = 200_000, repeat: int = 3) -> dict[str, float]:
    """Rows/s of `decode_ticks` and of `decode_record` on `n` clean simulator ticks (printed)."""
    from itertools import islice

    from dataflows.simulator import SimConfig, generate
    from tickcast.records import decode_record

    ticks = (r for r in generate(SimConfig(symbols=20, hours=float("inf"), ticks_per_minute=20.0)) if "score" in r)
    values = [orjson.dumps(r) for r in islice(ticks, n)]
    hints = np.full(n, -1, np.int64)
    decode_ticks(values[:100], hints[:100], now_ms=0)  # compile / load the kernels
    fast = min(_timed(lambda: decode_ticks(values, hints, now_ms=0)) for _ in range(repeat))
    ok = float(decode_ticks(values, hints, now_ms=0).ok.mean())
    ref = _timed(lambda: _decode_each(values, decode_record))
    figures = {"rows": n, "decode_ticks_rows_per_s": n / fast, "decode_record_rows_per_s": n / ref, "ok_share": ok}
    print(
        f"{n} clean ticks: decode_ticks {n / fast:,.0f} rows/s ({fast * 1e3:.0f} ms, ok {ok:.3f}); "
        f"decode_record {n / ref:,.0f} rows/s ({ref * 1e3:.0f} ms); x{ref / fast:.1f}"
    )
    return figures


def _decode_each(values: list[bytes], decode_record) -> None:
    for v in values:  # results dropped: the growing heap's GC passes would be billed to decode_record
        decode_record(v, source="bench", now_ms=0, default_ingest="event")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    bench()
