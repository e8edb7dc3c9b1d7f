"""The tick fields of plain JSON lines, read by one strict walk instead of Arrow's JSON reader.

Arrow's reader was most of what the columnar tick decoder (dataflows/tick_decode.py) cost a
realistic line (~1.2 of ~1.8 µs), mostly parsing what it then drops (a nested `meta`, ids
it builds strings of one by one). `read_plain` walks each line once, checks it against the
JSON grammar in full (RFC 8259: values, nesting, number syntax, literals) and takes the
schema fields' values from their bytes. It only vouches for *plain* lines, where reading a
value from its bytes is exactly what orjson (`tickcast.records.decode_record`) and Arrow
give:

- no backslash anywhere (no escape to decode), no DEL byte, no blank but space and tab;
- every number has at most 18 significant digits and an exponent of at most two digits
  (so none overflows a double or reaches an int past 64 bits, which orjson refuses);
- `score` has at most 15 significant digits and a decimal exponent within ±22, so
  `m / 10**k` (or `m * 10**k`) is one IEEE operation on exact values: the correctly
  rounded double, which is what orjson and Arrow read (Clinger's fast path);
- integer fields (ts, ingest_ts, polarity) are integer literals (the scanner already
  refuses a '.', 'e' or more than 18 digits in them).

Any other line is left to Arrow's reader, as before. The caller (the scanner) has already
checked UTF-8, nesting depth, duplicate or hidden members and the value types, so this walk
does not repeat those rules; it only decides "plain or not" and reads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from numba import njit

# The fields read, in `_READ_SCHEMA` order of tick_decode: member names and what they hold.
FIELDS = (b"symbol", b"ts", b"score", b"provider", b"id", b"ingest_ts", b"polarity")
_STRING_FIELDS = (0, 3, 4)
_SCORE = 2
# Top-level members the walk knows: the fields, then meta (its raw span is kept) and _control
# (a control record: never plain). Each may appear once (orjson keeps the last of a repeated one).
_MEMBERS = (*FIELDS, b"meta", b"_control")
_META, _CONTROL = len(FIELDS), len(FIELDS) + 1
_F_BYTES = np.frombuffer(b"".join(_MEMBERS), np.uint8)
_F_OFFSETS = np.cumsum([0] + [len(f) for f in _MEMBERS]).astype(np.int64)
_IS_STRING = np.zeros(len(_MEMBERS), np.bool_)
_IS_STRING[list(_STRING_FIELDS)] = True
_IS_SCORE = np.zeros(len(_MEMBERS), np.bool_)
_IS_SCORE[_SCORE] = True

ABSENT, NULL, VALUE = 0, 1, 2
MAX_DEPTH = 64
_POW10 = np.array([10.0**k for k in range(23)])  # exact doubles: 10**22 = 2**22 * 5**22, 5**22 < 2**53

# What a byte is to the walk outside strings.
_OTHER, _WS, _QUOTE, _LBRACE, _RBRACE, _LBRACKET, _RBRACKET, _COMMA, _COLON, _NUMBER, _LETTER = range(11)


def byte_classes(default: int, classes: dict[bytes, int]) -> np.ndarray:
    """A 256-entry uint8 table: the class of each byte of each key, `default` for the others."""
    table = np.full(256, default, np.uint8)
    for members, cls in classes.items():
        table[list(members)] = cls
    return table


_CLASS = byte_classes(
    _OTHER,
    {
        b" \t": _WS,
        b'"': _QUOTE,
        b"{": _LBRACE,
        b"}": _RBRACE,
        b"[": _LBRACKET,
        b"]": _RBRACKET,
        b",": _COMMA,
        b":": _COLON,
        b"-0123456789": _NUMBER,
        b"tfn": _LETTER,
    },
)
# Bytes that end a plain string's body, make it not plain ('"', '\\', control bytes, DEL), or
# start a UTF-8 sequence to check.
_STRING_STOP = np.zeros(256, np.bool_)
_STRING_STOP[:32] = True
_STRING_STOP[list(b'"\\')] = True
_STRING_STOP[0x7F:] = True

# What the walk expects next.
_E_VALUE, _E_KEY, _E_KEY_OR_END, _E_COLON, _E_NEXT, _E_VALUE_OR_END = range(6)


@njit(cache=True, inline="always")
def utf8_width(buf, j, hi):  # pragma: no cover - compiled
    """Length of the well-formed UTF-8 sequence starting with the non-ASCII byte buf[j], or 0
    (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF)."""
    c = buf[j]
    lo2, hi2 = 0x80, 0xBF
    if 0xC2 <= c <= 0xDF:
        need = 1
    elif c == 0xE0:
        need, lo2 = 2, 0xA0
    elif 0xE1 <= c <= 0xEC or c == 0xEE or c == 0xEF:
        need = 2
    elif c == 0xED:
        need, hi2 = 2, 0x9F
    elif c == 0xF0:
        need, lo2 = 3, 0x90
    elif 0xF1 <= c <= 0xF3:
        need = 3
    elif c == 0xF4:
        need, hi2 = 3, 0x8F
    else:
        return 0
    if j + need >= hi:
        return 0
    if buf[j + 1] < lo2 or buf[j + 1] > hi2:
        return 0
    for k in range(2, need + 1):
        if buf[j + k] < 0x80 or buf[j + k] > 0xBF:
            return 0
    return need + 1


@njit(cache=True, inline="always")
def member_index(buf, lo, hi, key_bytes, key_offsets):  # pragma: no cover - compiled
    """Index of the member name buf[lo:hi] among the names `key_bytes` holds (name k spans
    key_offsets[k] .. key_offsets[k + 1]), or -1."""
    for k in range(key_offsets.size - 1):
        a, b = key_offsets[k], key_offsets[k + 1]
        if b - a == hi - lo:
            same = True
            for m in range(b - a):
                if buf[lo + m] != key_bytes[a + m]:
                    same = False
                    break
            if same:
                return k
    return -1


@njit(cache=True, inline="always")
def read_digits(buf, i, hi):  # pragma: no cover - compiled
    """(value, count, end) of the decimal digits from buf[i] on (the value wraps past 18 digits:
    callers refuse those by the count)."""
    value = 0
    count = 0
    while i < hi and 48 <= buf[i] <= 57:
        value = value * 10 + (buf[i] - 48)
        count += 1
        i += 1
    return value, count, i


@njit(cache=True, inline="always")
def _number(buf, i, hi):  # pragma: no cover - compiled
    """Read the JSON number at buf[i]: (end, ok, negative, significant digits as int, their
    count, decimal exponent, is an integer literal). ok False: not JSON, or not plain."""
    negative = False
    if buf[i] == 45:
        negative = True
        i += 1
    if i >= hi or not 48 <= buf[i] <= 57:
        return i, False, negative, 0, 0, 0, False
    mantissa = 0
    digits = 0
    exponent = 0
    if buf[i] == 48:
        i += 1
        if i < hi and 48 <= buf[i] <= 57:  # a leading zero: not JSON
            return i, False, negative, 0, 0, 0, False
    else:
        while i < hi and 48 <= buf[i] <= 57:
            if digits < 19:
                mantissa = mantissa * 10 + (buf[i] - 48)
            digits += 1
            i += 1
    integer = True
    if i < hi and buf[i] == 46:  # '.'
        integer = False
        i += 1
        if i >= hi or not 48 <= buf[i] <= 57:
            return i, False, negative, 0, 0, 0, False
        while i < hi and 48 <= buf[i] <= 57:
            d = buf[i] - 48
            if digits > 0 or d != 0:  # leading zeros of the fraction are not significant
                if digits < 19:
                    mantissa = mantissa * 10 + d
                digits += 1
            exponent -= 1
            i += 1
    if i < hi and (buf[i] == 101 or buf[i] == 69):  # 'e' / 'E'
        integer = False
        i += 1
        sign = 1
        if i < hi and (buf[i] == 43 or buf[i] == 45):
            sign = -1 if buf[i] == 45 else 1
            i += 1
        if i >= hi or not 48 <= buf[i] <= 57:
            return i, False, negative, 0, 0, 0, False
        e, e_digits, i = read_digits(buf, i, hi)
        if e_digits > 2:
            return i, False, negative, 0, 0, 0, False
        exponent += sign * e
    if digits > 18 or exponent < -280 or exponent > 280:  # (many zeros after the point move it)
        return i, False, negative, 0, 0, 0, False
    return i, True, negative, mantissa, digits, exponent, integer


@njit(cache=True, inline="always")
def _string_end(buf, j, hi):  # pragma: no cover - compiled
    """Index of the closing quote of the plain string whose body starts at j, or -1 (an
    escape, a control byte, DEL, ill-formed UTF-8, or no end on the line)."""
    while j < hi:
        c = buf[j]
        if not _STRING_STOP[c]:
            j += 1
        elif c == 34:
            return j
        elif c >= 0x80:
            w = utf8_width(buf, j, hi)
            if w == 0:
                return -1
            j += w
        else:
            return -1
    return -1


@njit(cache=True)
def _walk(buf, lo, hi, row, kind, start, end, ints, score, meta, stack):  # pragma: no cover - compiled
    """Walk the line buf[lo:hi]; True if it is plain (see the module doc), its fields then
    written at `row`: kind (ABSENT/NULL/VALUE), string spans, int values, the score, and the
    raw span of meta's value (meta[0, row], meta[1, row]; -1 without one).
    `stack`: room for MAX_DEPTH container kinds (1: object, 2: array)."""
    depth = 0
    expect = _E_VALUE
    field = -1  # _MEMBERS index of the value to come at depth 1, -1 for others
    seen = 0  # bit set of the _MEMBERS met so far
    last_end = lo  # one past the last token
    i = lo
    while i < hi:
        c = buf[i]
        cls = _CLASS[c]
        if cls == _WS:
            i += 1
            continue
        if expect == _E_COLON:
            if cls != _COLON:
                return False
            expect = _E_VALUE
            i += 1
            continue
        if (cls == _RBRACE and expect == _E_KEY_OR_END) or (cls == _RBRACKET and expect == _E_VALUE_OR_END):
            depth -= 1  # an empty object or array ends
            expect = _E_NEXT
            i += 1
            last_end = i
            continue
        if expect == _E_NEXT:
            if depth == 0:
                return False  # something after the top-level value
            top = stack[depth - 1]
            if depth == 1 and meta[0, row] >= 0 and meta[1, row] < 0:
                meta[1, row] = last_end  # meta's value ends with the token before this one
            if cls == _COMMA:
                expect = _E_KEY if top == 1 else _E_VALUE
                field = -1
                i += 1
                continue
            if (cls == _RBRACE and top == 1) or (cls == _RBRACKET and top == 2):
                depth -= 1
                field = -1
                i += 1
                last_end = i
                continue
            return False
        if expect == _E_KEY or expect == _E_KEY_OR_END:
            if cls != _QUOTE:
                return False
            j = _string_end(buf, i + 1, hi)
            if j < 0:
                return False
            field = -1
            if depth == 1:
                field = member_index(buf, i + 1, j, _F_BYTES, _F_OFFSETS)
                if field >= 0:
                    if field == _CONTROL or seen & (1 << field):
                        return False  # a control record, or a member twice
                    seen |= 1 << field
            expect = _E_COLON
            i = j + 1
            continue
        # a value
        if depth == 0 and cls != _LBRACE:
            return False  # a line is one object
        if field == _META:
            meta[0, row] = i  # any JSON value; its end is seen at depth 1 again
            field = -1
        if cls == _LBRACE or cls == _LBRACKET:
            if depth >= MAX_DEPTH or field >= 0:  # a schema field holding a container: never plain
                return False
            stack[depth] = 1 if cls == _LBRACE else 2
            depth += 1
            expect = _E_KEY_OR_END if cls == _LBRACE else _E_VALUE_OR_END
            i += 1
            continue
        if cls == _QUOTE:
            j = _string_end(buf, i + 1, hi)
            if j < 0:
                return False
            if field >= 0:
                if not _IS_STRING[field]:
                    return False  # the scanner refuses these; never vouch for one
                kind[row, field] = VALUE
                start[row, field] = i + 1
                end[row, field] = j
            expect = _E_NEXT
            i = j + 1
            last_end = i
            continue
        if cls == _NUMBER:
            k, ok, negative, mantissa, digits, exponent, integer = _number(buf, i, hi)
            if not ok:
                return False
            if field >= 0:
                if _IS_STRING[field]:
                    return False
                if _IS_SCORE[field]:
                    if digits > 15 or exponent < -22 or exponent > 22:
                        return False  # not one exact IEEE operation: Arrow's to read
                    if mantissa == 0 and negative and integer:
                        return False  # the int -0: Arrow reads -0.0, orjson 0 (tick_id hashes repr(score))
                    value = float(mantissa)
                    value = value / _POW10[-exponent] if exponent < 0 else value * _POW10[exponent]
                    score[row] = -value if negative else value
                else:
                    if not integer:
                        return False
                    ints[row, field] = -mantissa if negative else mantissa
                kind[row, field] = VALUE
            expect = _E_NEXT
            i = k
            last_end = i
            continue
        if cls == _LETTER:
            if c == 110 and i + 4 <= hi and buf[i + 1] == 117 and buf[i + 2] == 108 and buf[i + 3] == 108:
                if field >= 0:
                    kind[row, field] = NULL
                i += 4
            elif c == 116 and i + 4 <= hi and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
                if field >= 0:
                    return False
                i += 4
            elif (
                c == 102
                and i + 5 <= hi
                and buf[i + 1] == 97
                and buf[i + 2] == 108
                and buf[i + 3] == 115
                and buf[i + 4] == 101
            ):
                if field >= 0:
                    return False
                i += 5
            else:
                return False
            if i < hi and (_CLASS[buf[i]] == _NUMBER or _CLASS[buf[i]] == _LETTER or _CLASS[buf[i]] == _OTHER):
                return False  # "nullx", "true1": not a literal
            expect = _E_NEXT
            last_end = i
            continue
        return False
    return depth == 0 and expect == _E_NEXT


@njit(cache=True, nogil=True)
def _walk_rows(buf, starts, framed, lo, hi, plain, kind, start, end, ints, score, meta):  # pragma: no cover - compiled
    """`_walk` over the framed lines lo..hi-1 (line i spans starts[i] .. starts[i + 1] - 2),
    into the rows of the outputs (`_outputs`). Per-row outputs are (row, member) so one line's
    writes sit together; only `kind` is zeroed (the others are read where kind says VALUE).
    Without the GIL: two threads walk two halves of a block (`_walk_lines`)."""
    nm = len(_MEMBERS)
    stack = np.empty(MAX_DEPTH, np.uint8)
    for row in range(lo, hi):
        if framed[row]:
            if _walk(buf, starts[row], starts[row + 1] - 1, row, kind, start, end, ints, score, meta, stack):
                plain[row] = True
            else:
                for f in range(nm):
                    kind[row, f] = ABSENT


def _outputs(n: int) -> tuple[np.ndarray, ...]:
    """`_walk_rows`' outputs for n lines: plain, kind, start, end, ints, score, meta."""
    nm = len(_MEMBERS)
    return (
        np.zeros(n, np.bool_),
        np.zeros((n, nm), np.int8),
        np.empty((n, nm), np.int64),
        np.empty((n, nm), np.int64),
        np.empty((n, nm), np.int64),
        np.empty(n, np.float64),
        np.full((2, n), -1, np.int64),
    )


# A block of at least this many lines is walked in two halves at once, one on a thread of its
# own (`_walk_rows` runs without the GIL): the walk is about a quarter of a realistic replay's
# flow thread, and the store's writer leaves the second core idle about half the time. Below
# it the hand-over (~50 µs) costs more than half the walk saves.
PARALLEL_LINES = 20_000
_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _walk_lines(buf: np.ndarray, starts: np.ndarray, framed: np.ndarray) -> tuple[np.ndarray, ...]:
    """`_walk_rows` over every line: each row's outputs depend on its line alone, so two halves
    walked at once give the same arrays as one walk."""
    n = framed.size
    out = _outputs(n)
    if n < PARALLEL_LINES:
        _walk_rows(buf, starts, framed, 0, n, *out)
        return out
    mid = n // 2
    first = _pool().submit(_walk_rows, buf, starts, framed, 0, mid, *out)
    try:
        _walk_rows(buf, starts, framed, mid, n, *out)
    finally:
        first.result()  # raises what the thread raised; the outputs are whole only after it
    return out


def _pool() -> ThreadPoolExecutor:
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(1, thread_name_prefix="json-walk")
        return _helper


def _forget_pool() -> None:
    """In a forked child: the parent's pool object came along, its thread did not (work handed
    to it would wait forever), and the lock may have been held by a thread that is gone."""
    global _helper, _helper_lock
    _helper, _helper_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


@njit(cache=True)
def _gather(buf, rows, kind, lo, hi, f):  # pragma: no cover - compiled
    """Member f's string spans buf[lo[r, f]:hi[r, f]] of the rows `rows` (empty where kind is
    not VALUE) as Arrow string buffers (int32 offsets, data)."""
    offsets = np.empty(rows.size + 1, np.int32)
    offsets[0] = 0
    total = 0
    for k in range(rows.size):
        r = rows[k]
        if kind[r, f] == VALUE:
            total += hi[r, f] - lo[r, f]
        offsets[k + 1] = total
    data = np.empty(total, np.uint8)
    for k in range(rows.size):
        r = rows[k]
        if kind[r, f] == VALUE:
            data[offsets[k] : offsets[k + 1]] = buf[lo[r, f] : hi[r, f]]
    return offsets, data


def read_plain(
    blob: bytes | bytearray, starts: np.ndarray, framed: np.ndarray, schema: pa.Schema
) -> tuple[np.ndarray, pa.Table, np.ndarray, np.ndarray]:
    """(plain mask, a `schema` table of the plain rows' fields in row order, and per plain
    row the raw span of its meta value, start and end, -1 without one). Line i of `blob`
    spans starts[i] .. starts[i + 1] - 2; only lines `framed` are walked. `schema` is
    tick_decode's `_READ_SCHEMA`: FIELDS in order, strings, int64s and the float64 score."""
    buf = np.frombuffer(blob, np.uint8)
    plain, kind, start, end, ints, score, meta = _walk_lines(buf, starts, framed)
    rows = np.flatnonzero(plain)
    pick: slice | np.ndarray = slice(None) if rows.size == plain.size else rows  # a slice: no gather
    columns = []
    for f, field in enumerate(schema):
        present = kind[pick, f] == VALUE
        every = bool(present.all())
        validity = None if every else pa.array(present).buffers()[1]
        if f in _STRING_FIELDS:
            offsets, data = _gather(buf, rows, kind, start, end, f)
            columns.append(
                pa.Array.from_buffers(pa.string(), rows.size, [validity, pa.py_buffer(offsets), pa.py_buffer(data)])
            )
            continue
        values = score[pick] if f == _SCORE else np.ascontiguousarray(ints[pick, f])
        if every:
            columns.append(pa.array(values, field.type))
        else:  # what is not there was never written: zero it, for a deterministic buffer
            columns.append(pa.array(np.where(present, values, 0), field.type, mask=~present))
    return plain, pa.Table.from_arrays(columns, schema=schema), meta[0, pick], meta[1, pick]
