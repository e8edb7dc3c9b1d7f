"""Input files read in bounded chunks of raw records, in ingest order.

A replay file is read twice, a few MiB at a time, and never held whole: first for each
record's ordering key (to learn whether the file is already in ingest order, as
`tickcast simulate` and any recorder write it, and how many records it holds: `survey`, on a
thread of its own from the moment the replay's source is made), then for the records themselves, which go
on as they are (JSONL: `Lines`, the block's bytes and where each line is, which the columnar
decoder reads as they are (dataflows/line_block.py); Parquet: the
record batches as `ArrowRows`, which the decode step reads column-wise (dataflows/arrow_ticks.py),
or one dict per row when their columns are not plain tick columns, or when several files are
merged). Memory is bounded by the chunk, not by the file.

A file that is not in ingest order is sorted (stable) like before: JSONL by an index of
(key, byte offset, length) per line, 24 bytes a record, the lines read back one by one in
key order; Parquet (rare: columnar exports are written sorted) by reading it whole.

The ordering key is `ingest_ts`, else `ts`, else `close_time` (DESIGN §3), an int or a
float taken as int, else 0 (records that are not JSON objects sort first; they are
rejected anyway). `_line_keys` reads it straight from the bytes where the value is a plain
integer literal or null; any other spelling (a float, an escaped member name, a line that is
not an object) is left to orjson, line by line, so the key is the one `orjson.loads` gives.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numba import njit

import dataflows.kernels  # noqa: F401 - Numba's target without its BLAS probe, before the survey's kernel runs
from dataflows.arrow_rows import ArrowRows, joined
from dataflows.json_fields import byte_classes, member_index, read_digits
from dataflows.line_block import Lines

CHUNK_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 65_536

# the member names whose value orders a record, in precedence order
_KEY_NAMES = (b"ingest_ts", b"ts", b"close_time")
_KEY_BYTES = np.frombuffer(b"".join(_KEY_NAMES), np.uint8)
_KEY_OFFSETS = np.cumsum([0] + [len(k) for k in _KEY_NAMES]).astype(np.int64)
_ABSENT, _INT = 0, 1
_MAX_DIGITS = 18


@dataclass(slots=True)
class Chunk:
    """Records of one file in file (or key) order: `keys[i]` orders `records[i]`."""

    keys: np.ndarray
    records: Sequence[Any]  # a list, or ArrowRows (Parquet rows as columns)


# ---------------------------------------------------------------------------
# the key of each line, from its bytes


@njit(cache=True, inline="always")
def _is_space(c):  # pragma: no cover - compiled
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 11 or c == 12  # bytes.strip()'s set


# What a byte is to `_line_key`'s walk: most bytes (digits, letters, spaces) are nothing to it,
# and one table lookup sends them on (a chain of comparisons per byte cost ~30 % more).
_OTHER, _QUOTE, _OPEN, _CLOSE, _COMMA, _COLON = range(6)
_BYTE_CLASS = byte_classes(_OTHER, {b'"': _QUOTE, b"{[": _OPEN, b"}]": _CLOSE, b",": _COMMA, b":": _COLON})


@njit(cache=True, inline="always")
def _line_key(buf, lo, hi, key_bytes, key_offsets):  # pragma: no cover - compiled
    """(key, sure) of the stripped line buf[lo:hi]."""
    if hi - lo < 2 or buf[lo] != 123:  # '{'
        return 0, False
    byte_class = _BYTE_CLASS
    # state and value of ingest_ts, ts, close_time (scalars: no allocation per line)
    s0 = s1 = s2 = _ABSENT
    v0 = v1 = v2 = 0
    depth = 0
    expect_key = False
    field = -1
    i = lo
    while i < hi:
        kind = byte_class[buf[i]]
        if kind == _OTHER:
            i += 1
            continue
        if kind == _QUOTE:  # a string
            j = i + 1
            escaped = False
            while j < hi:
                c = buf[j]
                if c == 34:
                    break
                if c == 92:
                    escaped = True
                    j += 1
                j += 1
            if j >= hi:
                return 0, False
            if depth == 1:
                if expect_key:
                    expect_key = False
                    if escaped:
                        return 0, False  # "\u0074s" would be ts
                    field = member_index(buf, i + 1, j, key_bytes, key_offsets)
                elif field >= 0:  # a string value of a key member: not a number
                    return 0, False
            i = j + 1
            continue
        if kind == _OPEN:
            if depth == 1 and field >= 0:
                return 0, False
            depth += 1
            expect_key = buf[i] == 123 and depth == 1
        elif kind == _CLOSE:
            depth -= 1
            if depth == 0:
                if i + 1 != hi:  # something after the object: orjson's to judge
                    return 0, False
                break
        elif kind == _COMMA:
            if depth == 1:
                expect_key = True
                field = -1
        elif depth == 1 and field >= 0:  # a colon before the value of a key member
            j = i + 1
            while j < hi and _is_space(buf[j]):
                j += 1
            if j + 4 <= hi and buf[j] == 110 and buf[j + 1] == 117 and buf[j + 2] == 108 and buf[j + 3] == 108:
                if field == 0:  # null: orjson's None, not a key
                    s0 = _ABSENT
                elif field == 1:
                    s1 = _ABSENT
                else:
                    s2 = _ABSENT
                i = j + 4
                continue
            k = j + 1 if j < hi and buf[j] == 45 else j
            v, digits, k = read_digits(buf, k, hi)
            end = k
            while end < hi and _is_space(buf[end]):
                end += 1
            clean = 0 < digits <= _MAX_DIGITS and end < hi and (buf[end] == 44 or buf[end] == 125)
            clean = clean and not (digits > 1 and buf[k - digits] == 48)  # 01: not JSON
            if not clean:
                return 0, False
            v = -v if buf[j] == 45 else v
            if field == 0:
                s0, v0 = _INT, v
            elif field == 1:
                s1, v1 = _INT, v
            else:
                s2, v2 = _INT, v
            i = k
            continue
        i += 1
    if depth != 0:
        return 0, False
    if s0 == _INT:
        return v0, True
    if s1 == _INT:
        return v1, True
    if s2 == _INT:
        return v2, True
    return 0, True


@njit(cache=True, nogil=True)
def _split_lines(buf, newlines, key_bytes, key_offsets, with_keys):  # pragma: no cover - compiled
    """Stripped non-empty lines of buf, whose b"\\n" bytes are at `newlines`: (start, end, key,
    sure) each (`with_keys` False: key 0, sure, for every line: the key walk is most of the cost)."""
    n = newlines.size + 1
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    keys = np.empty(n, np.int64)
    sure = np.empty(n, np.bool_)
    count = 0
    lo = 0
    size = buf.size
    for k in range(n):
        hi = newlines[k] if k < newlines.size else size
        a, b = lo, hi
        while a < b and _is_space(buf[a]):
            a += 1
        while b > a and _is_space(buf[b - 1]):
            b -= 1
        if b > a:
            starts[count] = a
            ends[count] = b
            if with_keys:
                keys[count], sure[count] = _line_key(buf, a, b, key_bytes, key_offsets)
            else:
                keys[count], sure[count] = 0, True
            count += 1
        lo = hi + 1
    return starts[:count], ends[:count], keys[:count], sure[:count]


_KEY_MIN, _KEY_MAX = -(2**63), 2**63 - 1


def effective_ingest(obj: Any) -> int:
    """The ordering key of a decoded record: ingest_ts, else its event time (DESIGN §3)."""
    if isinstance(obj, dict):
        for key in ("ingest_ts", "ts", "close_time"):
            value = obj.get(key)
            if isinstance(value, float) and math.isfinite(value):  # NaN/inf (Parquet floats): not a time
                return min(max(int(value), _KEY_MIN), _KEY_MAX)
            if isinstance(value, int) and not isinstance(value, bool):
                return min(max(value, _KEY_MIN), _KEY_MAX)  # a key that far out orders a record to be rejected
    return 0  # unparseable records sort first; they are rejected anyway


def _orjson_key(line: bytes) -> int:
    """The key orjson gives, clamped to int64 (a key that far out orders a record to be rejected)."""
    try:
        return effective_ingest(orjson.loads(line))
    except orjson.JSONDecodeError:
        return 0


# ---------------------------------------------------------------------------
# JSONL


def _jsonl_blocks(path: Path, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(file offset, bytes) blocks of whole lines, about CHUNK_BYTES each, as uint8 views of one
    buffer the next block overwrites: a reader keeps what it needs (`.tobytes()`) before asking
    for the next. Reading into one warm buffer, not a new 4 MiB `bytes` per block (and a second
    one to join a block with the line cut at its end), halves what reading costs a line.
    `start`/`stop`: the bytes [start, stop) only (a line boundary each; stop None: the end)."""
    buf = np.empty(CHUNK_BYTES, np.uint8)
    held = 0  # bytes at the front of buf: the part of a line cut by the previous read
    offset = start
    left = -1 if stop is None else stop - start  # bytes still to read (-1: to the end)
    with path.open("rb", buffering=0) as fh:
        fh.seek(start)
        while True:
            if held == buf.size:  # a line longer than the buffer: room for more of it
                buf = np.concatenate([buf, np.empty(buf.size, np.uint8)])
            room = buf.size if left < 0 else min(buf.size, held + left)
            got = fh.readinto(memoryview(buf)[held:room]) if room > held else 0  # type: ignore[arg-type]  # numpy arrays are buffers
            if left >= 0:
                left -= got
            if not got:
                if held:
                    yield offset, buf[:held]
                return
            end = held + got
            cut = _after_last_newline(buf, end)
            if cut == 0:
                held = end
                continue
            yield offset, buf[:cut]
            offset += cut
            held = end - cut
            buf[:held] = buf[cut:end]


def _after_last_newline(buf: np.ndarray, end: int) -> int:
    """1 + the index of the last b"\n" in buf[:end], 0 if there is none."""
    hi = end
    while hi > 0:
        lo = max(0, hi - 65_536)
        found = np.flatnonzero(buf[lo:hi] == 10)
        if found.size:
            return lo + int(found[-1]) + 1
        hi = lo
    return 0


def _jsonl_index(block: np.ndarray, *, keyed: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, keys) of the block's records (`keyed` False: keys all 0)."""
    # numpy finds the line ends (vectorized), the kernel strips and keys each line
    starts, ends, keys, sure = _split_lines(block, np.flatnonzero(block == 10), _KEY_BYTES, _KEY_OFFSETS, keyed)
    for k in np.flatnonzero(~sure).tolist():
        keys[k] = _orjson_key(block[starts[k] : ends[k]].tobytes())
    return starts, ends, keys


@dataclass(frozen=True, slots=True)
class Survey:
    """What a first pass over a JSONL file learns: whether its lines are in ingest order, and
    how many records (non-blank lines) it holds (the progress bar's total)."""

    in_order: bool
    records: int


def _ascending(keys: np.ndarray, last: int) -> bool:
    """Whether the (non-empty) keys run from `last` up without a step down. A comparison, not
    `np.diff`: a difference of keys at the int64 extremes wraps and reads as a step up."""
    return not (keys[0] < last or bool((keys[1:] < keys[:-1]).any()))


@dataclass(frozen=True, slots=True)
class _Part:
    """The first pass over a byte range of a file: in order within itself, its records, and
    its first and last keys (to join with the parts beside it)."""

    in_order: bool
    records: int
    first: int | None
    last: int | None


def _survey_part(path: Path, start: int = 0, stop: int | None = None) -> _Part:
    first: int | None = None
    last = np.iinfo(np.int64).min
    in_order, records = True, 0
    for _, block in _jsonl_blocks(path, start, stop):
        _, _, keys = _jsonl_index(block, keyed=in_order)  # out of order: only counting is left
        records += keys.size
        if in_order and keys.size:
            if first is None:
                first = int(keys[0])
            in_order = _ascending(keys, last)
            last = int(keys[-1])
    return _Part(in_order, records, first, last if first is not None else None)


# A file this large is surveyed in two halves on two threads (the scan releases the GIL): the
# replay waits for the first pass before its first record, and two cores halve that wait.
SPLIT_BYTES = 32 << 20


def _halfway(path: Path) -> int | None:
    """The first line boundary at or after the middle of the file; None for a small file or
    when no line starts after the middle."""
    size = path.stat().st_size
    if size < SPLIT_BYTES or (os.cpu_count() or 1) < 2:
        return None
    with path.open("rb") as fh:
        fh.seek(size // 2)
        while chunk := fh.read(65_536):
            at = chunk.find(b"\n")
            if at >= 0:
                cut = fh.tell() - len(chunk) + at + 1
                return cut if cut < size else None
    return None


def _survey_now(path: Path) -> Survey:
    middle = _halfway(path)
    if middle is None:
        parts = [_survey_part(path)]
    else:
        second = _pool("file-survey-half").submit(_survey_part, path, middle, None)
        parts = [_survey_part(path, 0, middle), second.result()]
    records = sum(p.records for p in parts)
    in_order = all(p.in_order for p in parts)
    keyed = [p for p in parts if p.first is not None]
    for a, b in zip(keyed, keyed[1:], strict=False):  # each part starts no lower than the last one ended
        in_order = in_order and a.last is not None and b.first is not None and b.first >= a.last
    return Survey(in_order, records)


# One worker each: a file's survey, and the second half of a large file's. Not one pool of
# two: two surveys could take both workers and wait for halves no worker is left to run.
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(name: str) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
        return pool


def survey(path: Path) -> Future[Survey]:
    """Start a JSONL file's first pass on a thread of its own: the line scan releases the GIL,
    so a replay's `FileReplaySource` has it run while the flow is being built, and the
    progress bar's count and the reader's order check share the one pass."""
    return _pool("file-survey").submit(_survey_now, path)


def _surveyed(path: Path, surveyed: Future[Survey] | None) -> Survey:
    return _survey_now(path) if surveyed is None else surveyed.result()


def _jsonl_chunks(path: Path, *, keyed: bool = True, surveyed: Future[Survey] | None = None) -> Iterator[Chunk]:
    if _surveyed(path, surveyed).in_order:
        # Read again for the records; their keys only matter when files are merged (`keyed`):
        # a single file in order skips the second key scan (~1 µs a line).
        for _, block in _jsonl_blocks(path):
            starts, ends, keys = _jsonl_index(block, keyed=keyed)
            yield Chunk(keys, Lines(block.tobytes(), starts, ends))  # the lines as the block's bytes
        return
    # out of order: sort an index, read the lines back in key order
    parts = []
    for off, block in _jsonl_blocks(path):
        starts, ends, keys = _jsonl_index(block)
        parts.append((keys, starts + off, ends - starts))
    keys = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    where = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    size = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, np.int64)
    del parts
    order = np.argsort(keys, kind="stable")
    fd = os.open(path, os.O_RDONLY)
    try:
        step = 50_000
        for lo in range(0, order.size, step):
            pick = order[lo : lo + step]
            lines = [os.pread(fd, n, at) for n, at in zip(size[pick].tolist(), where[pick].tolist(), strict=True)]
            yield Chunk(keys[pick], lines)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Parquet


def _parquet_keys_of_rows(batch: Any) -> np.ndarray:
    """The keys of a batch through its rows' Python values (any column type)."""
    names = [n for n in ("ingest_ts", "ts", "close_time") if n in batch.schema.names]
    columns = [batch.column(n).to_pylist() for n in names]
    return np.fromiter(
        (effective_ingest(dict(zip(names, values, strict=True))) for values in zip(*columns, strict=True))
        if columns
        else (0 for _ in range(batch.num_rows)),
        np.int64,
        batch.num_rows,
    )


def _column_keys(col: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(key, usable) per row of an int or float time column, as `effective_ingest` reads its
    value (an int clamped to int64; a finite float truncated, clamped; else not usable), or
    None for another type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    usable = pc.is_valid(col)
    if pa.types.is_integer(col.type):
        if col.type == pa.uint64():
            col = pc.min_element_wise(col, pa.scalar(_KEY_MAX, pa.uint64()))
        values = pc.fill_null(col, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return values, usable.to_numpy(zero_copy_only=False)
    if pa.types.is_float32(col.type) or pa.types.is_float64(col.type):
        floats = pc.fill_null(col, 0.0).cast(pa.float64()).to_numpy(zero_copy_only=False)
        finite = np.isfinite(floats) & usable.to_numpy(zero_copy_only=False)
        floats = np.trunc(np.where(finite, floats, 0.0))
        inside = (floats >= -(2.0**63)) & (floats < 2.0**63)  # int64 holds these exactly
        values = np.where(floats > 0, _KEY_MAX, _KEY_MIN).astype(np.int64)
        values[inside] = floats[inside].astype(np.int64)
        return values, finite
    return None


def _parquet_keys(batch: Any) -> np.ndarray:
    """The ordering key of each row (`effective_ingest`), column-wise for int and float columns."""
    keys = np.zeros(batch.num_rows, np.int64)
    found = np.zeros(batch.num_rows, bool)
    for name in ("ingest_ts", "ts", "close_time"):
        if name not in batch.schema.names:
            continue
        read = _column_keys(batch.column(name))
        if read is None:  # timestamps, strings…: their Python values say
            return _parquet_keys_of_rows(batch)
        values, usable = read
        take = usable & ~found
        keys[take] = values[take]
        found |= usable
    return keys


def _parquet_chunks(path: Path) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # here, not at the top: a JSONL replay's survey starts as soon as this module is imported,
    # and arrow_ticks (with the tick decoder's kernels, ~0.13 s) is the flow's to import, after
    from dataflows.arrow_ticks import columnar

    def batches(columns: list[str] | None = None) -> Iterator[Any]:
        return pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)

    schema = pq.ParquetFile(path).schema_arrow
    # rows the columnar checks can read stay Arrow columns (dataflows/arrow_ticks.py); others are dicts
    rows = ArrowRows if columnar(schema) else (lambda table: table.to_pylist())
    key_columns = [n for n in ("ingest_ts", "ts", "close_time") if n in schema.names]
    last, in_order = np.iinfo(np.int64).min, True
    for batch in batches(key_columns or schema.names[:1]):
        keys = _parquet_keys(batch)
        if keys.size and not _ascending(keys, last):
            in_order = False
            break
        if keys.size:
            last = int(keys[-1])
    if in_order:
        for batch in batches():
            yield Chunk(_parquet_keys(batch), rows(batch))
        return
    table = pa.Table.from_batches(list(batches()))  # rare: read whole, sort (stable)
    keys = _parquet_keys(table)
    order = np.argsort(keys, kind="stable")
    yield Chunk(keys[order], rows(table.take(pa.array(order))))


def count_records(path: Path, surveyed: Future[Survey] | None = None) -> int:
    """Records (non-blank lines; Parquet rows) in one input file, without decoding them."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return _surveyed(path, surveyed).records


def file_chunks(path: Path, *, keyed: bool = True, surveyed: Future[Survey] | None = None) -> Iterator[Chunk]:
    """The records of one file in ingest order (stable), chunk by chunk. `keyed` False: the
    chunks' keys may be left 0 (a single file: nothing is merged by them). `surveyed`: a JSONL
    file's first pass, started already (`survey`); None: made here."""
    if path.suffix == ".parquet":
        return _parquet_chunks(path)
    return _jsonl_chunks(path, keyed=keyed, surveyed=surveyed)


# ---------------------------------------------------------------------------
# several files


def _mergeable(chunks: Iterator[Chunk], arrow: bool) -> Iterator[Chunk]:
    """Chunks whose records are `Lines` (JSONL), a list (the lines of an out-of-order file,
    Parquet rows as dicts) or, when `arrow` (every file Parquet of one schema), ArrowRows:
    what the merge of several files interleaves."""
    for chunk in chunks:
        keep = isinstance(chunk.records, (Lines, list)) or (arrow and isinstance(chunk.records, ArrowRows))
        yield chunk if keep else Chunk(chunk.keys, list(chunk.records))


def _one_schema(paths: list[Path]) -> bool:
    """Every file is Parquet and all have one Arrow schema: their rows can stay columns
    through the merge (a folder of daily exports); else they are merged as dicts."""
    if not all(p.suffix == ".parquet" for p in paths):
        return False
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in paths]
    return all(s == schemas[0] for s in schemas)


def joined_records(parts: Sequence[Sequence[Any]]) -> Sequence[Any]:
    """Chunks' records as one: JSONL lines stay `Lines` and Parquet rows Arrow columns when every
    non-empty part is one (Arrow: of one file), else a list."""
    held = [p for p in parts if len(p)]
    if held and all(isinstance(p, Lines) for p in held):
        return Lines.concat(held)  # type: ignore[arg-type]
    return joined(held)


def _in_order(records: Sequence[Any], order: np.ndarray) -> Sequence[Any]:
    """`records` (positions `order`): one new block of lines when they are `Lines`, one
    Arrow table when ArrowRows."""
    if order.size < 2 or bool((order[1:] > order[:-1]).all()):  # files a day each: mostly one file's run
        return records
    if isinstance(records, Lines):
        return records.take(order)
    if isinstance(records, ArrowRows):
        import pyarrow as pa

        return ArrowRows(records.table.take(pa.array(order)))
    return [records[k] for k in order.tolist()]


def merged_chunks(
    paths: list[Path], surveys: Sequence[Future[Survey] | None] | None = None
) -> Iterator[tuple[np.ndarray, Sequence[Any], np.ndarray]]:
    """All records of all files, merged by key (ties: file order, then line order), as
    (keys, records, file index per record) chunks (one file: the keys may be 0). `surveys`:
    per file, its first pass if started already (`survey`)."""
    started = list(surveys) if surveys is not None else [None] * len(paths)
    if len(paths) == 1:  # nothing to merge: the keys are not needed
        for chunk in file_chunks(paths[0], keyed=False, surveyed=started[0]):
            yield chunk.keys, chunk.records, np.zeros(len(chunk.records), np.int64)
        return
    arrow = _one_schema(paths)
    streams = [_mergeable(file_chunks(p, surveyed=s), arrow) for p, s in zip(paths, started, strict=True)]
    held = [Chunk(np.empty(0, np.int64), []) for _ in paths]  # read, not yet given, per file
    done = [False] * len(paths)

    def pull(f: int) -> None:
        nxt = next(streams[f], None)
        if nxt is None:
            done[f] = True
        else:
            held[f] = Chunk(np.concatenate([held[f].keys, nxt.keys]), joined_records([held[f].records, nxt.records]))

    def fill() -> None:
        for f in range(len(paths)):
            while not done[f] and not held[f].records:
                pull(f)

    fill()
    while True:
        reading = [f for f in range(len(paths)) if not done[f]]
        if not reading and not any(h.records for h in held):
            return
        # An unread record of file g has a key >= the last key g holds: below the smallest of
        # those, every held record is safe to give (ties at the bound wait for more).
        bound = min(int(held[f].keys[-1]) for f in reading) if reading else None
        takes = [len(h.records) if bound is None else int(np.searchsorted(h.keys, bound, "left")) for h in held]
        if not any(takes):
            for f in reading:
                if int(held[f].keys[-1]) == bound:
                    pull(f)
            fill()
            continue
        keys = np.concatenate([h.keys[:t] for h, t in zip(held, takes, strict=True)])
        files = np.concatenate([np.full(t, f, np.int64) for f, t in enumerate(takes)])
        records = joined_records([h.records[:t] for h, t in zip(held, takes, strict=True)])
        held = [Chunk(h.keys[t:], h.records[t:]) for h, t in zip(held, takes, strict=True)]
        order = np.argsort(keys, kind="stable")  # gathered file by file in line order: ties keep that
        yield keys[order], _in_order(records, order), files[order]
        fill()
