"""Decode + validate + provider gate: the first stateful step, keyed by source partition.

Keyed by partition (not by provider) so each partition's records keep their
ingest order on the way to the per-symbol step. A provider whose ticks fail
validation `disable_streak` times in a row is disabled until an
`{"_control": "enable_provider"}` record re-enables it (DESIGN §4).

No payload can make this step raise (Bytewax would stop the whole flow): every record
is accepted or becomes a `rejected_records` row with its reason, and a fault of the
decoders themselves is caught and recorded the same way (reason `decoder_error`).
"""

from __future__ import annotations

import functools
import logging
import time
import zlib
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.operators import StatefulBatchLogic

from dataflows.arrow_rows import ArrowBlock
from dataflows.arrow_ticks import decode_table
from dataflows.candle_decode import vouched_candles
from dataflows.hooks import FlowHooks
from dataflows.items import ConsumerError, LiveEvent, ShardWork, TableRow, TradingControl
from dataflows.line_block import Lines
from dataflows.outputs import Out
from dataflows.progress import END, PartitionMark, Progress
from dataflows.snapshot import freeze, thaw
from dataflows.sources import RawBatch, RawBlock
from dataflows.tick_batches import SymbolTicks, split_by_symbol, table_from_records
from dataflows.tick_decode import FastTicks, decode_ticks, objects_as_json
from tickcast import metrics
from tickcast.records import MAX_FUTURE_MS, MAX_RECORD_BYTES, Rejection, decode_record, is_provider_name

log = logging.getLogger(__name__)

# Input: RawBatch | ConsumerError | PartitionMark per source partition.
# Output items of this step (dataflows/items.py; wrapped as (partition_key, item) by Bytewax):
#   ShardWork(shard, [(symbol, SymbolInput), ...])   each symbol's accepted ticks and candles
#   ShardWork(shard, Progress)                        replays: the partition's progress (dataflows/progress.py)
#   Rows("rejected_records", [row, ...])
#   Events([LiveEvent("events", data, None, ts_ms), ...])
#   TradingControl({action, command, id, at, by, reason})   admin commands for the trading stage


@dataclass
class GateState:
    streak: dict[str, int] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    enable_seen: dict[str, int] = field(default_factory=dict)
    partition: str = ""  # replays: the source partition (learnt from its PartitionMarks)
    newest: int = 0  # replays: the largest ingest_ts decoded in this partition
    announced: int = -(2**62)  # replays: the progress step last sent to the shards


SHARDS = 16  # per-symbol state groups (dataflows/symbol_logic.py): spread over workers, few items each

ALL_SHARDS = tuple(f"shard-{i:02d}" for i in range(SHARDS))


@dataclass(frozen=True)
class DecodeConfig:
    disable_streak: int = 5
    pos_threshold: float = 0.0
    recovery: bool = True
    trust: dict[str, float] = field(default_factory=dict)  # provider -> weight (default 1.0)
    # Replays: a partition's progress goes to the shards when (newest − offset) crosses a
    # multiple of `progress_step_ms` (the model stage's evaluation boundaries + slack).
    progress_step_ms: int = 300_000
    progress_offset_ms: int = 120_000
    max_record_bytes: int = MAX_RECORD_BYTES  # INGEST_MAX_RECORD_BYTES
    max_future_ms: int = MAX_FUTURE_MS  # INGEST_MAX_FUTURE_MS
    # Live flows: an ingest_ts further than max_future_ms ahead of the wall clock is `future`
    # too (the simulator runs its own clock, TICKCAST_SIM_SPEED, and is exempt).
    wall_clock: bool = False


@functools.cache  # a crc32 and a format per symbol per batch add up
def shard_of(symbol: str) -> str:
    """The shard key of a symbol; stable across processes (Python's str hash is not)."""
    return ALL_SHARDS[zlib.crc32(symbol.encode()) % SHARDS]


def rejected_row(rej: Rejection) -> dict[str, Any]:
    """Count a refusal and return its `rejected_records` row (every step refuses through this)."""
    metrics.REJECTED_RECORDS.labels(*rej.metric_labels).inc()
    return rej.row()


def rejected_rows(rejections: list[Rejection]) -> list[dict[str, Any]]:
    """`rejected_row` of each, counted once per label pair: a replay refuses thousands of
    duplicate and late ticks, and a labelled counter costs ~2 µs a call."""
    for labels, n in Counter(rej.metric_labels for rej in rejections).items():
        metrics.REJECTED_RECORDS.labels(*labels).inc(n)
    return [rej.row() for rej in rejections]


def _reject(rej: Rejection, out: list[Any]) -> None:
    out.append(TableRow("rejected_records", rejected_row(rej)))


@dataclass(slots=True)  # read-only, but not frozen: a frozen __init__ costs ~0.3 µs more, per symbol and batch
class SymbolInput:
    """What the decode step hands one symbol per batch: its accepted ticks (columnar, arrival
    order; None when there are none), its decoded candles (dicts, arrival order) and where
    the candles came among the ticks: candle c came after the first `cuts[c]` ticks (ties
    in ingest_ts as the source ordered them). `cuts` None: after all of them."""

    ticks: SymbolTicks | None
    candles: list[dict[str, Any]]
    cuts: list[int] | None = None


@dataclass
class _Batch:
    """Accepted records of one activation, gathered while the gate walks the batch in order."""

    fast_rows: list[np.ndarray] = field(default_factory=list)  # row indexes into FastTicks.table
    slow_ticks: list[dict[str, Any]] = field(default_factory=list)
    slow_pos: list[int] = field(default_factory=list)
    candles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    candle_pos: dict[str, list[int]] = field(default_factory=dict)  # record positions of the candles
    candle_cuts: dict[str, list[int]] = field(default_factory=dict)  # slow ticks of the symbol before each
    slow_count: dict[str, int] = field(default_factory=dict)  # slow ticks accepted so far, per symbol
    fast_pos: np.ndarray | None = None  # record position of each FastTicks row
    last_candle: int = -1  # the largest record position of an accepted candle

    def cuts(self, fast: FastTicks | None) -> dict[str, list[int]]:
        """Per symbol with candles: how many of its accepted ticks came before each candle."""
        if fast is None or self.fast_pos is None or not any(rows.size for rows in self.fast_rows):
            return self.candle_cuts  # counted as the records went by
        rows = np.concatenate(self.fast_rows)
        if self.fast_pos[rows].min() > self.last_candle:  # no fast tick before any candle (a live burst's order)
            return self.candle_cuts
        column = fast.table.column("symbol")
        encoded = pc.dictionary_encode(
            column if rows.size == fast.table.num_rows else column.take(pa.array(rows))  # all rows: in order
        ).combine_chunks()
        symbols = list(self.candle_pos)
        positions = np.fromiter(chain.from_iterable(self.candle_pos.values()), np.int64)
        single = positions.size == len(symbols)  # one candle per symbol (a live burst)
        sizes = None if single else list(map(len, self.candle_pos.values()))
        # One sorted key per fast tick, (symbol code, record position), and one search for all
        # candles: the fast ticks of a candle's symbol that came before it (no code: none).
        span = int(max(self.fast_pos.max(), positions.max())) + 1
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        keys = np.sort(codes * span + self.fast_pos[rows])
        code_of = pc.index_in(pa.array(symbols, pa.string()), value_set=encoded.dictionary)
        candle_codes = pc.fill_null(code_of, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if sizes is not None:
            candle_codes = np.repeat(candle_codes, sizes)
        before = np.searchsorted(keys, candle_codes * span + positions) - np.searchsorted(keys, candle_codes * span)
        counts = (np.fromiter(chain.from_iterable(self.candle_cuts.values()), np.int64) + before).tolist()
        if sizes is None:
            return dict(zip(symbols, map(list, zip(counts))))
        ends = np.cumsum(sizes).tolist()
        return {s: counts[e - n : e] for s, n, e in zip(symbols, sizes, ends, strict=True)}

    def add_candles(self, positions: list[int], candles: list[dict[str, Any]]) -> None:
        """Candles accepted outside the record-by-record walk (`candle_decode`), merged in as if
        the walk had met them: arrival order within and across symbols, slow ticks counted."""
        if not candles:
            return
        self.last_candle = max(self.last_candle, max(positions))
        if not self.candles and not self.slow_ticks:  # a live burst: nothing to merge with
            symbols = list(map(itemgetter("symbol"), candles))
            by_symbol = dict(zip(symbols, [[c] for c in candles]))
            if len(by_symbol) == len(candles):  # one candle per symbol
                self.candles = by_symbol
                self.candle_pos = dict(zip(symbols, [[p] for p in positions]))
                self.candle_cuts = dict(zip(symbols, map(list.copy, repeat([0], len(symbols)))))  # a [0] each
                return
            for pos, candle in zip(positions, candles, strict=True):
                symbol = candle["symbol"]
                self.candles.setdefault(symbol, []).append(candle)
                self.candle_pos.setdefault(symbol, []).append(pos)
                self.candle_cuts.setdefault(symbol, []).append(0)
            return
        slow_at: dict[str, list[int]] = {}  # the slow ticks' positions per symbol (ascending)
        for tick, pos in zip(self.slow_ticks, self.slow_pos, strict=True):
            slow_at.setdefault(tick["symbol"], []).append(pos)
        merged = {s: list(zip(self.candle_pos[s], self.candles[s], strict=True)) for s in self.candles}
        for pos, candle in zip(positions, candles, strict=True):
            merged.setdefault(candle["symbol"], []).append((pos, candle))
        for entries in merged.values():
            entries.sort(key=itemgetter(0))  # positions are distinct
        order = sorted(merged, key=lambda s: merged[s][0][0])  # symbols as they first came
        self.candles = {s: [c for _, c in merged[s]] for s in order}
        self.candle_pos = {s: [p for p, _ in merged[s]] for s in order}
        self.candle_cuts = {s: [bisect_left(slow_at.get(s, []), p) for p, _ in merged[s]] for s in order}

    def by_symbol(self, fast: FastTicks | None, trust: dict[str, float]) -> dict[str, SymbolTicks]:
        if fast is not None and any(rows.size for rows in self.fast_rows):
            return split_by_symbol(self.tick_parts(fast), trust)
        # per-record ticks only (simulator, HTTP): no Arrow for a few dicts
        return SymbolTicks.group_records(self.slow_ticks, trust) if self.slow_ticks else {}

    def tick_parts(self, fast: FastTicks | None) -> list[tuple[pa.Table, np.ndarray | None, np.ndarray]]:
        parts: list[tuple[pa.Table, np.ndarray | None, np.ndarray]] = []
        if fast is not None and self.fast_rows:
            rows = np.concatenate(self.fast_rows)
            whole = rows.size == fast.table.num_rows
            table = fast.table if whole else fast.table.take(pa.array(rows))
            # positions in the batch (not in the fast table) order fast and slow ticks together
            positions = rows if self.fast_pos is None else self.fast_pos[rows]
            parts.append((table, fast.id_hash if whole else fast.id_hash[rows], positions))
        if self.slow_ticks:
            parts.append((table_from_records(self.slow_ticks), None, np.asarray(self.slow_pos, np.int64)))
        return parts


def _rest(n: int, *taken: np.ndarray | list[int]) -> list[int]:
    """The positions 0..n-1 in none of `taken` (a mask, not a set difference per part)."""
    rest = np.ones(n, bool)
    for positions in taken:
        rest[positions] = False
    return np.flatnonzero(rest).tolist()


def _shard_work(
    ticks: dict[str, SymbolTicks], candles: dict[str, list[dict[str, Any]]], cuts: dict[str, list[int]]
) -> list[ShardWork]:
    """Each symbol's SymbolInput, grouped by shard (shards as they first come, symbols in set
    order); the loops run in C (a deque of no length drains the appends)."""
    symbols = list(ticks.keys() | candles.keys())
    # (candles' lists are never empty: `or []` is .get(symbol, []), a list each)
    inputs = map(SymbolInput, map(ticks.get, symbols), [candles.get(s) or [] for s in symbols], map(cuts.get, symbols))
    keys = list(map(shard_of, symbols))
    shards: dict[str, list[tuple[str, SymbolInput]]] = {shard: [] for shard in dict.fromkeys(keys)}
    deque(map(list.append, map(shards.__getitem__, keys), zip(symbols, inputs)), maxlen=0)
    return [ShardWork(shard, pairs) for shard, pairs in shards.items()]


def _joined(batches: list[RawBatch]) -> RawBatch:
    """One activation's batches as one (a RawBlock, keys kept, when any of them is)."""
    if all(isinstance(b, ArrowBlock) for b in batches):  # one Parquet file's rows: still columns
        return ArrowBlock.concat(batches)  # type: ignore[arg-type]
    if any(isinstance(b, RawBlock) for b in batches):
        return RawBlock.concat([b if isinstance(b, RawBlock) else _as_block(b) for b in batches])
    return [r for batch in batches for r in batch]


def _as_block(records: RawBatch) -> RawBlock:
    names, values, hints = zip(*records, strict=True) if records else ((), (), ())
    hint_ms = np.array([-1 if h is None else h for h in hints], np.int64)
    return RawBlock(names, list(values), hint_ms, np.arange(len(values), dtype=np.int64))


def _key(records: RawBatch, i: int) -> bytes | None:
    return records.key(i) if isinstance(records, RawBlock) else None


_SIMULATOR = "sim"  # the simulator's source name (dataflows.sources._LivePartition)


_NO_WALL = 2**62  # a wall clock no ingest_ts is ahead of: the simulator's rows


def _slow_only(source: str) -> bool:
    """Records of this source never take the columnar path: (for now) the simulator: with its
    dicts on the columnar path, tests/dataflows/test_symbol_logic.py's deferred-vs-at-once
    comparison fails now and then (not understood yet; see the issue 21 notes in
    docs/benchmarks.md). HTTP and Parquet dicts do take it."""
    return source == _SIMULATOR


def _walls(names: tuple[str, ...], name_idx: np.ndarray, now_ms: int) -> np.ndarray:
    """Per record of a RawBlock: the wall clock its ingest_ts is checked against."""
    return np.array([_NO_WALL if n == _SIMULATOR else now_ms for n in names], np.int64)[name_idx]


def _text(payload: Any) -> str:
    """A payload as text for `rejected_records`, whatever it is."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload).decode("utf-8", "replace")
    try:
        return payload if isinstance(payload, str) else repr(payload)
    except Exception:  # noqa: BLE001 - a repr that fails (or recurses) still leaves a row
        return f"<{type(payload).__name__}>"


DecodeInput = RawBatch | PartitionMark | ConsumerError  # per source partition (dataflows/items.py)


class DecodeLogic(StatefulBatchLogic[DecodeInput, tuple[Any, ...], bytes | None]):
    def __init__(self, config: DecodeConfig, state: bytes | GateState | None, hooks: FlowHooks | None = None) -> None:
        self.config = config
        # every partition's gate in this process hears an "enable provider" (FlowHooks.enable_requests)
        self.enable_requests = (hooks or FlowHooks()).enable_requests
        self.state = thaw(state) or GateState()

    def on_batch(self, values: list[DecodeInput]) -> tuple[list[tuple[Any, ...]], bool]:
        out = Out()
        now_ms = int(time.time() * 1000)
        self._apply_enable_requests(out, now_ms)
        marks: list[PartitionMark] = []
        batches: list[RawBatch] = []
        for v in values:  # one per source batch: isinstance costs nothing here
            if isinstance(v, ConsumerError):  # the broker's trouble: a rejected_records row, and on
                self._consumer_error(v, now_ms, out)
            elif isinstance(v, PartitionMark):
                marks.append(v)
            else:
                batches.append(v)
        records = batches[0] if len(batches) == 1 else _joined(batches) if batches else []
        batch = _Batch()
        # Dict candles (a live burst: one per symbol at a candle close) are checked as columns,
        # before the tick decode so that it skips them; an accepted candle neither moves nor
        # reads the gate, so they skip the walk below too. A RawBlock's dicts are few (its
        # payloads are bytes), and an ArrowBlock (Parquet columns) holds none until its refused
        # rows are made dicts: the check takes those the tick decode refused.
        early = not isinstance(records, (RawBlock, ArrowBlock))
        vouched_pos, vouched = self._vouched_candles(records, range(len(records)), now_ms) if early else ([], [])
        try:
            fast, fast_pos = self._fast_decode(records, now_ms, skip=vouched_pos)
        except Exception:  # noqa: BLE001 - a fault of the fast path must not stop the flow
            log.exception("columnar decode failed on a batch of %d records; decoding them one by one", len(records))
            fast, fast_pos = None, np.empty(0, np.int64)
        batch.fast_pos = fast_pos
        # The gate is sequential (a streak of failures disables a provider for what follows),
        # so the records the fast path could not take are handled one by one, in order, and
        # each run of fast ticks between them goes through the gate as a block.
        taken = [fast_pos] if fast else []
        slow: Sequence[int] = _rest(len(records), *taken, vouched_pos) if taken or vouched_pos else range(len(records))
        if not early:
            vouched_pos, vouched = self._vouched_candles(records, slow, now_ms)
            if vouched_pos:
                slow = _rest(len(records), *taken, vouched_pos)
        done = 0
        for i in slow:
            if fast is not None:
                done = self._fast_run(fast, fast_pos, done, int(np.searchsorted(fast_pos, i)), records, batch, out)
            source, payload, hint = records[i]
            self._one(i, source, payload, hint, _key(records, i), now_ms, batch, out)
        if fast is not None:
            self._fast_run(fast, fast_pos, done, fast_pos.size, records, batch, out)
        batch.add_candles(vouched_pos, vouched)
        ticks = batch.by_symbol(fast, self.config.trust)
        cuts = batch.cuts(fast) if ticks and batch.candles else {}
        for work in _shard_work(ticks, batch.candles, cuts):
            out.append(work)
        if ticks or batch.candles:
            metrics.FLOW_LAST_ACTIVITY.set(time.time())
        if marks or self.state.partition:  # a replay: track and report its progress
            self._progress(marks, ticks, batch, out)
        return out.done(), StatefulBatchLogic.RETAIN

    def _progress(
        self, marks: list[PartitionMark], ticks: dict[str, SymbolTicks], batch: _Batch, out: list[Any]
    ) -> None:
        """Replays: tell every shard how far this partition has come (dataflows/progress.py)."""
        state, cfg = self.state, self.config
        newest = [int(t.ingest_ts.max()) for t in ticks.values()]
        newest += [c["ingest_ts"] for candles in batch.candles.values() for c in candles]
        state.newest = max([state.newest, *newest])
        for mark in marks:
            state.partition = mark.partition
            step = END if mark.end else (state.newest - cfg.progress_offset_ms - 1) // cfg.progress_step_ms
            if step <= state.announced:
                continue
            state.announced = step
            value = END if mark.end else state.newest
            for shard in ALL_SHARDS:
                out.append(ShardWork(shard, Progress(state.partition, shard, value)))

    def _decode_ticks(
        self,
        values: Sequence[bytes],
        hints: np.ndarray,
        keys: list[bytes | None] | None,
        now_ms: int,
        wall: int | np.ndarray | None,
        objects: list[dict[str, Any]] | None = None,
        *,
        dicts: bool = False,
    ) -> FastTicks:
        cfg = self.config
        return decode_ticks(
            values,
            hints,
            now_ms=now_ms,
            pos_threshold=cfg.pos_threshold,
            keys=keys,
            max_record_bytes=cfg.max_record_bytes,
            max_future_ms=cfg.max_future_ms,
            wall_ms=wall,
            objects=objects,
            dicts=dicts,
        )

    def _fast_decode(
        self, records: RawBatch, now_ms: int, skip: list[int] | None = None
    ) -> tuple[FastTicks | None, np.ndarray]:
        """Columnar decode of the JSON payloads and dict records; (None, []) when there are none.
        `skip`: positions of dict records decoded already (candles), left out.

        Dicts (HTTP, the simulator, Parquet rows) are written as JSON once per batch and take
        the same columnar checks (`tick_decode.objects_as_json`); a dict JSON cannot spell
        exactly stays for the per-record path, like any payload the columnar path refuses."""
        if not records:
            return None, np.empty(0, np.int64)
        wall_clock = self.config.wall_clock
        if isinstance(records, ArrowBlock):  # Parquet rows: from their Arrow columns (dataflows/arrow_ticks.py)
            return self._arrow_decode(records, now_ms)
        keys = records.keys if isinstance(records, RawBlock) else None
        if isinstance(records, RawBlock):  # Kafka and file sources: columns already
            names = records.names
            values = records.values
            if (isinstance(values, Lines) or set(map(type, values)) == {bytes}) and not any(
                _slow_only(n) for n in names
            ):
                wall: int | np.ndarray | None = None
                if wall_clock and _SIMULATOR not in names:
                    wall = now_ms
                elif wall_clock and records.name_idx is not None:
                    wall = _walls(names, records.name_idx, now_ms)
                elif wall_clock and names[0] != _SIMULATOR:
                    wall = now_ms
                fast = self._decode_ticks(values, records.hints, keys, now_ms, wall)
                return fast, np.flatnonzero(fast.ok)
            records = list(records)  # not its usual content: the general path below
        names, payloads, hints = zip(*records, strict=True)  # three C-speed passes, not one Python loop
        kinds = set(map(type, payloads))
        distinct = set(names)
        objects: list[dict[str, Any]] | None = None
        dicts = False  # `values` are the dicts themselves (decode_ticks reads them as columns)
        slow_names = any(_slow_only(n) for n in distinct)
        if kinds == {bytes} and not slow_names:
            idx = np.arange(len(records))
            values = list(payloads)
        else:
            # (per record only where the batch needs it: HTTP's dicts are all usable)
            usable = (
                np.ones(len(payloads), bool)
                if kinds <= {bytes, dict}
                else np.fromiter((p.__class__ is bytes or p.__class__ is dict for p in payloads), bool, len(payloads))
            )
            if slow_names:
                usable &= ~np.fromiter((_slow_only(n) for n in names), bool, len(names))
            if skip:
                usable[skip] = False
            idx = np.flatnonzero(usable)
            if not idx.size:
                return None, np.empty(0, np.int64)
            chosen = [payloads[i] for i in idx.tolist()] if idx.size < len(payloads) else list(payloads)
            if dict in kinds and set(map(type, chosen)) == {dict}:  # HTTP: read from the dicts
                values, dicts = chosen, True
            elif dict in kinds:
                objects = [p if p.__class__ is dict else {} for p in chosen]
                dumped, fine = objects_as_json([p for p in chosen if p.__class__ is dict])
                it = iter(dumped)
                values = [next(it) if p.__class__ is dict else p for p in chosen]
                if not fine.all():  # dicts JSON cannot spell: the per-record path's
                    spelled = np.ones(len(chosen), bool)
                    spelled[[k for k, p in enumerate(chosen) if p.__class__ is dict]] = fine
                    idx, values, objects = (
                        idx[spelled],
                        [v for v, s in zip(values, spelled, strict=True) if s],
                        [o for o, s in zip(objects, spelled, strict=True) if s],
                    )
                    if not idx.size:
                        return None, np.empty(0, np.int64)
            else:
                values = chosen
            picks = idx.tolist()
            hints = tuple([hints[i] for i in picks])
            keys = None if keys is None else [keys[i] for i in picks]
            if slow_names:  # (else no simulator row: the wall clock rule needs no names)
                names = tuple([names[i] for i in picks])
                distinct = set(names)
        try:
            hint_ms = np.array(hints, np.int64)  # Kafka timestamps: all ints
        except TypeError:  # some None (no hint)
            hint_ms = np.array([-1 if h is None else h for h in hints], np.int64)
        wall = None
        if wall_clock and distinct != {_SIMULATOR}:
            wall = now_ms
            if _SIMULATOR in distinct:  # the simulator runs its own clock: exempt row by row
                wall = np.where(np.array([n == _SIMULATOR for n in names]), _NO_WALL, now_ms)
        fast = self._decode_ticks(values, hint_ms, keys, now_ms, wall, objects, dicts=dicts)
        return fast, idx[fast.ok]

    def _arrow_decode(self, block: ArrowBlock, now_ms: int) -> tuple[FastTicks, np.ndarray]:
        cfg = self.config
        fast = decode_table(
            block.rows.table,
            pos_threshold=cfg.pos_threshold,
            max_record_bytes=cfg.max_record_bytes,
            max_future_ms=cfg.max_future_ms,
            wall_ms=now_ms if cfg.wall_clock else None,
        )
        block.prefetch(np.flatnonzero(~fast.ok))  # the per-record path's rows, as dicts in one call
        return fast, np.flatnonzero(fast.ok)

    def _vouched_candles(
        self, records: RawBatch, among: Sequence[int], now_ms: int
    ) -> tuple[list[int], list[dict[str, Any]]]:
        """(record positions, candles) of the dict candles among the records at `among` that
        the columnar check accepts (dataflows/candle_decode.py); the rest stay for the other
        paths. The simulator's records stay on the per-record path, like its ticks (`_slow_only`).
        A fault of the check costs its speed only: the records then go one by one."""
        cfg = self.config
        try:
            whole = isinstance(among, range) and len(among) == len(records)
            if not len(among):
                return [], []
            names: Sequence[str]
            payloads: Sequence[Any]
            hints: Sequence[int | None]
            if isinstance(records, RawBlock):  # a file's lines, Kafka messages: read as columns
                names, payloads, hints = records.columns(among)
            else:
                entries = records if whole else [records[i] for i in among]
                names, payloads, hints = zip(*entries, strict=True)  # C-speed passes (a list of records)
            if any(_slow_only(n) for n in set(names)):
                payloads = [None if _slow_only(n) else p for n, p in zip(names, payloads, strict=True)]
            keys = None
            if isinstance(records, RawBlock) and records.keys is not None:
                keys = [records.key(i) for i in among]
            at, candles = vouched_candles(
                payloads,
                hints,
                keys,
                wall_ms=now_ms if cfg.wall_clock else None,
                max_future_ms=cfg.max_future_ms,
                max_record_bytes=cfg.max_record_bytes,
            )
        except Exception:  # noqa: BLE001 - never stop the flow
            log.exception("columnar candle check failed on a batch of %d records", len(records))
            return [], []
        return (at if whole else [among[k] for k in at]), candles

    def _fast_run(
        self, fast: FastTicks, fast_pos: np.ndarray, lo: int, hi: int, records: RawBatch, batch: _Batch, out: Out
    ) -> int:
        """Gate fast-decoded rows lo..hi (all valid ticks, so no streak grows inside the run)."""
        if hi <= lo:
            return lo
        rows = np.arange(lo, hi)
        providers = fast.table.column("provider").slice(lo, hi - lo)
        if self.state.disabled:
            blocked = pc.is_in(providers, value_set=pa.array(sorted(self.state.disabled))).to_numpy(
                zero_copy_only=False
            )
            if blocked.any():
                for j in rows[blocked].tolist():
                    record = fast.table.slice(j, 1).to_pylist()[0]
                    self._disabled(records[int(fast_pos[j])][0], record, out)
                rows = rows[~blocked]
                providers = providers.filter(pa.array(~blocked))
        if any(self.state.streak.values()):
            for provider in pc.unique(providers).to_pylist():
                self.state.streak[provider] = 0
        batch.fast_rows.append(rows)
        return hi

    def _one(
        self,
        pos: int,
        source: str,
        payload: Any,
        hint: int | None,
        key: bytes | None,
        now_ms: int,
        batch: _Batch,
        out: Out,
    ) -> None:
        cfg = self.config
        try:
            decoded = decode_record(
                payload,
                source=source,
                now_ms=hint if hint is not None else now_ms,
                default_ingest="now" if hint is not None else "event",
                pos_threshold=cfg.pos_threshold,
                key=key,
                max_record_bytes=cfg.max_record_bytes,
                max_future_ms=cfg.max_future_ms,
                wall_ms=now_ms if cfg.wall_clock and source != _SIMULATOR else None,
            )
        except Exception as exc:  # noqa: BLE001 - a decoder bug must cost one record, not the flow
            log.exception("decode_record raised on a record from %s; it is kept in rejected_records", source)
            decoded = Rejection(source, f"decoder_error: {type(exc).__name__}: {exc}"[:500], _text(payload), now_ms)
        if isinstance(decoded, Rejection):
            if decoded.provider:
                self._failure(decoded.provider, decoded.received_ts, out)
            if decoded.provider:  # a tick (it names its provider) refused by validation
                metrics.SENTIMENT_INGEST_ERRORS.labels("invalid").inc()
            _reject(decoded, out)
            return
        kind, record = decoded
        if kind == "control":
            self._control(record, now_ms, out)
            return
        if kind == "tick":
            provider = record["provider"]
            if provider in self.state.disabled:
                self._disabled(source, record, out)
                return
            self.state.streak[provider] = 0
            batch.slow_ticks.append(record)
            batch.slow_pos.append(pos)
            batch.slow_count[record["symbol"]] = batch.slow_count.get(record["symbol"], 0) + 1
            return
        symbol = record["symbol"]
        batch.candles.setdefault(symbol, []).append(record)
        batch.candle_pos.setdefault(symbol, []).append(pos)
        batch.candle_cuts.setdefault(symbol, []).append(batch.slow_count.get(symbol, 0))
        batch.last_candle = max(batch.last_candle, pos)

    def _consumer_error(self, error: ConsumerError, now_ms: int, out: Out) -> None:
        # The row's source keeps its documented `kafka-error:<topic>` name (runbook, rejected_records).
        _reject(
            Rejection(f"kafka-error:{error.topic or 'consumer'}", f"kafka consumer error: {error.text()}", "", now_ms),
            out,
        )

    def _disabled(self, source: str, record: dict[str, Any], out: Out) -> None:
        metrics.SENTIMENT_INGEST_ERRORS.labels("provider_disabled").inc()
        _reject(Rejection.for_record(source, f"provider {record['provider']!r} is disabled", record), out)

    def _failure(self, provider: str, ts: int, out: list[Any]) -> None:
        if not is_provider_name(provider):  # junk names would grow the streaks and metric labels unbounded
            return
        streak = self.state.streak.get(provider, 0) + 1
        self.state.streak[provider] = streak
        if streak >= self.config.disable_streak and provider not in self.state.disabled:
            self.state.disabled.add(provider)
            metrics.PROVIDER_DISABLED.labels(provider).set(1)
            data = {"kind": "provider_disabled", "provider": provider, "failures": streak}
            out.append(LiveEvent("events", data, None, ts))

    def _control(self, record: dict[str, Any], now_ms: int, out: list[Any]) -> None:
        if record["action"] == "trading":  # to the trading stage, in input order (dataflows/trading/stage.py)
            out.append(TradingControl(record))
            return
        self.enable_requests[record["provider"]] = time.time_ns()
        self._apply_enable_requests(out, now_ms)

    def _apply_enable_requests(self, out: list[Any], now_ms: int) -> None:
        for provider, requested in self.enable_requests.items():
            if requested <= self.state.enable_seen.get(provider, 0):
                continue
            self.state.enable_seen[provider] = requested
            self.state.streak[provider] = 0
            if provider in self.state.disabled:
                self.state.disabled.discard(provider)
                metrics.PROVIDER_DISABLED.labels(provider).set(0)
                out.append(LiveEvent("events", {"kind": "provider_enabled", "provider": provider}, None, now_ms))

    def snapshot(self) -> bytes | None:
        return freeze(self.state, enabled=self.config.recovery)
