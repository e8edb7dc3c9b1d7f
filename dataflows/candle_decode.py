"""Columnar check of dict candle records: the candles of a live burst (HTTP ingest hands over
a thousand candle dicts at a candle close) validated as columns instead of one by one.

`vouched_candles` accepts a dict only when every rule `tickcast.records.decode_record` applies
to a candle holds for it, and returns the very dict `decode_record` would. It vouches for
plain cases only (an exact `dict` holding just the contract's candle fields, values of exact
JSON types: str, int, float); anything else — and any record a rule refuses — is left to
`decode_record`, so rejection reasons stay those of the per-record path by construction.

JSON text (file lines, Kafka messages: a replay of the simulator's candles.jsonl) is vouched
for when it is exactly the compact JSON of the object it parses to (`_spelled_plainly`): then
`decode_record` reads that object from it and nothing else (no member named twice, no space,
no escape), so the object takes the dicts' checks. Any other spelling stays per record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import repeat
from operator import contains, itemgetter, le
from typing import Any

import numpy as np
import orjson

from tickcast.records import CANDLE_FIELDS, INTERVAL_MS, MAX_TS_MS, MIN_TS_MS, SYMBOL_RE, valid_names

_FIELDS = frozenset(CANDLE_FIELDS)
_every_field = itemgetter(*CANDLE_FIELDS)
_PRICES = ("open", "high", "low", "close")
_NUMERIC = ("open_time", "close_time", *_PRICES, "volume", "ingest_ts")
# Ints this large or larger are left to decode_record: their float() may round (or overflow).
_EXACT_INT = 2**53
# An upper bound of the compact JSON of a dict this module vouches for (CANDLE_FIELDS only;
# a symbol of at most 32 plain characters, an INTERVAL_MS name, numbers of at most 24
# characters): `decode_record`'s `too_large` rule cannot refuse such a record when the limit
# is at least this (tests/dataflows/test_decode_burst.py checks the bound).
MAX_CANDLE_JSON = 400


def _numbers(values: list[Any], kinds: set[type] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, mask of the entries that are JSON numbers float() keeps exactly: a
    float, or an int — not a bool — of magnitude below 2**53); NaN where the mask is False.
    `kinds`: the values' types, when the caller has them."""
    kinds = set(map(type, values)) if kinds is None else kinds
    if kinds and kinds <= {int, float}:
        try:
            floats = np.array(values, np.float64)
        except OverflowError:  # an int beyond float's range: entry by entry below
            pass
        else:
            if kinds == {float}:
                return floats, np.ones(len(values), bool)
            ok = np.abs(floats) < _EXACT_INT  # a rounded int reads as 2**53 or more
            if float in kinds:  # a mixed column: its floats are exact whatever their size
                ok |= np.array([v.__class__ is float for v in values], bool)
            return np.where(ok, floats, math.nan), ok
    ok = np.array([v.__class__ is float or (v.__class__ is int and -_EXACT_INT < v < _EXACT_INT) for v in values], bool)
    return np.array([v if k else math.nan for v, k in zip(values, ok.tolist(), strict=True)], np.float64), ok


def _epoch_ms(values: list[Any], kinds: set[type] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, mask of `records._int_ms`'s accepted ones: integral, years 2000..2100)."""
    floats, ok = _numbers(values, kinds)
    with np.errstate(invalid="ignore"):  # NaN: refused
        ok &= (floats >= MIN_TS_MS) & (floats <= MAX_TS_MS) & (floats == np.floor(floats))
    return np.where(ok, floats, 0).astype(np.int64), ok


def _hints(hints: list[int | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 hints, mask of those given, mask of the usable: None or an int the int64 sums
    below hold; anything else is decode_record's)."""
    if set(map(type, hints)) == {int}:  # Kafka timestamps, HTTP's ingest times: all ints
        try:
            values = np.array(hints, np.int64)
        except OverflowError:
            pass
        else:
            return values, np.ones(len(hints), bool), (values > -(2**62)) & (values < 2**62)
    given = np.array([h is not None for h in hints], bool)
    usable = np.array([h is None or (h.__class__ is int and -(2**62) < h < 2**62) for h in hints], bool)
    values = np.array(
        [h if ok and h is not None else 0 for h, ok in zip(hints, usable.tolist(), strict=True)], np.int64
    )
    return values, given, usable


def _symbols_ok(symbols: list[Any]) -> np.ndarray:
    """Per entry: a str matching SYMBOL_RE (`records.valid_name`, once per distinct value)."""
    if set(map(type, symbols)) == {str}:  # no other types to step over
        texts = set(symbols)
        valid = valid_names(texts, SYMBOL_RE)
        if len(valid) == len(texts):
            return np.ones(len(symbols), bool)
        return np.array([s in valid for s in symbols], bool)
    valid = valid_names({s for s in symbols if s.__class__ is str}, SYMBOL_RE)
    return np.array([s.__class__ is str and s in valid for s in symbols], bool)


def _steps(intervals: list[Any]) -> np.ndarray:
    """Per entry: the interval's length in ms (INTERVAL_MS), 0 when it names none."""
    if set(map(type, intervals)) == {str}:
        return np.array(list(map(INTERVAL_MS.get, intervals, repeat(0))), np.int64)
    return np.array([INTERVAL_MS.get(v, 0) if v.__class__ is str else 0 for v in intervals], np.int64)


def _as_decoded(kinds: dict[str, set[type]], in_order: bool) -> bool:
    """Are these accepted candles, as they are, the dicts `decode_record` makes of them? The
    contract's fields in its order (`in_order`), ints for the times, floats for the prices and
    volume (`_numbers` gives each the float it is), every ingest_ts stated (an int: `_epoch_ms`'s).
    `kinds`: the types of each numeric field's values."""
    return (
        in_order
        and all(kinds[name] == {int} for name in ("open_time", "close_time", "ingest_ts"))
        and all(kinds[name] == {float} for name in (*_PRICES, "volume"))
    )


def _spelled_plainly(payloads: Sequence[Any]) -> list[Any]:
    """`payloads` with each JSON text naming close_time that is the compact JSON (orjson's) of
    the object it parses to replaced by that object. A member named twice parses to an object
    whose JSON lacks one of them, and whitespace or an escape spells it differently: those
    texts stay as they are, as does anything longer than any vouched candle."""
    loads, dumps = orjson.loads, orjson.dumps
    out = list(payloads)
    for i, p in enumerate(payloads):
        if p.__class__ is bytes and len(p) <= MAX_CANDLE_JSON and b'"close_time"' in p:
            try:
                obj = loads(p)
                if obj.__class__ is dict and dumps(obj) == p:
                    out[i] = obj
            except (orjson.JSONDecodeError, orjson.JSONEncodeError):
                continue
    return out


def vouched_candles(
    payloads: Sequence[Any],
    hints: Sequence[int | None],
    keys: Sequence[bytes | None] | None,
    *,
    wall_ms: int | None,
    max_future_ms: int,
    max_record_bytes: int,
) -> tuple[list[int], list[dict[str, Any]]]:
    """(indexes into `payloads`, decoded candles) of the payloads `decode_record` accepts as
    candles — called as `dataflows.decode.DecodeLogic._one` calls it: `now_ms` the hint when
    there is one (`default_ingest` "now"), else the event time ("event"); `wall_ms` the wall
    clock (None: not checked). A payload left out may still be a valid candle (or a tick, a
    control, junk): `decode_record` decides."""
    if max_record_bytes < MAX_CANDLE_JSON:
        return [], []
    # Contract fields only; a missing one reads as None below, which every check refuses (so
    # a dict without close_time, a tick say, is passed over by one lookup).
    n = len(payloads)
    classes = set(map(type, payloads))
    if bytes in classes:  # JSON text: the plainly spelled objects are checked as dicts
        payloads = _spelled_plainly(payloads)
        classes = set(map(type, payloads))
    if classes == {dict}:  # HTTP's dicts: C loops, no frame per record
        idx = np.flatnonzero(np.fromiter(map(contains, payloads, repeat("close_time")), bool, n)).tolist()
    else:
        idx = [i for i, p in enumerate(payloads) if p.__class__ is dict and "close_time" in p]
    if not idx:
        return [], []
    rows = [payloads[i] for i in idx] if len(idx) < n else list(payloads)
    # Every field in the contract's order (a burst as HTTP sends it): no other key, for one
    # set of key tuples; else each dict's keys are looked up in the contract's
    in_order = set(map(tuple, rows)) == {CANDLE_FIELDS}
    if not in_order:
        fields_only = np.fromiter(map(le, map(dict.keys, rows), repeat(_FIELDS)), bool, len(rows))  # keys() <= _FIELDS
        if not fields_only.all():
            keep = np.flatnonzero(fields_only).tolist()
            idx, rows = [idx[k] for k in keep], [rows[k] for k in keep]
            if not idx:
                return [], []
    if in_order or set(map(len, rows)) == {len(CANDLE_FIELDS)}:  # rows naming every field: one C call reads each
        column = dict(zip(CANDLE_FIELDS, map(list, zip(*map(_every_field, rows), strict=True)), strict=True))
    else:
        column = {name: list(map(dict.get, rows, repeat(name))) for name in CANDLE_FIELDS}
    symbols, intervals = column["symbol"], column["interval"]
    steps = _steps(intervals)
    ok = _symbols_ok(symbols) & (steps > 0)
    kinds = {name: set(map(type, column[name])) for name in _NUMERIC}  # (each field's types, looked at once)
    open_time, ok_open = _epoch_ms(column["open_time"], kinds["open_time"])
    close_time, ok_close = _epoch_ms(column["close_time"], kinds["close_time"])
    ok &= ok_open & ok_close & (close_time == open_time + steps) & (open_time % np.maximum(steps, 1) == 0)
    prices = {}
    for name in (*_PRICES, "volume"):
        prices[name], typed = _numbers(column[name], kinds[name])
        ok &= typed & np.isfinite(prices[name])
    o, h, lo, c = (prices[k] for k in _PRICES)
    with np.errstate(invalid="ignore"):  # NaN rows are refused above already
        ok &= (o > 0) & (h > 0) & (lo > 0) & (c > 0) & (h >= lo)
        ok &= (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c)) & (prices["volume"] >= 0)
    given = column["ingest_ts"]
    if type(None) in kinds["ingest_ts"]:
        has_ingest = np.array([v is not None for v in given], bool)
        stated, ok_stated = _epoch_ms([0.0 if v is None else v for v in given])
        ok &= ok_stated | ~has_ingest
    else:  # every ingest_ts stated (HTTP's)
        has_ingest = np.ones(len(given), bool)
        stated, ok_stated = _epoch_ms(given, kinds["ingest_ts"])
        ok &= ok_stated
    hinted, has_hint, ok_hint = _hints(list(hints) if len(idx) == len(hints) else [hints[i] for i in idx])
    ok &= ok_hint
    # `records._ingest`: the stated ingest_ts, else now (the hint), else (files) the close_time
    ingest = np.where(has_ingest, stated, np.where(has_hint, hinted, close_time))
    ok &= close_time - ingest <= max_future_ms
    if wall_ms is not None:
        ok &= ingest - wall_ms <= max_future_ms
    if keys is not None:  # a Kafka key must be the symbol
        ok &= np.array(
            [
                keys[i] is None or (s.__class__ is str and keys[i] == s.encode())
                for i, s in zip(idx, symbols, strict=True)
            ],
            bool,
        )
    chosen = np.flatnonzero(ok).tolist()
    if len(chosen) == len(rows) and _as_decoded(kinds, in_order):  # a burst's candles, as HTTP sends them
        return idx, list(map(dict.copy, rows))
    if len(chosen) < len(rows):
        symbols, intervals = [symbols[k] for k in chosen], [intervals[k] for k in chosen]
    candles = [
        {
            "symbol": symbol,
            "interval": interval,
            "open_time": open_ms,
            "close_time": close_ms,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "ingest_ts": ingest_ms,
        }
        for symbol, interval, open_ms, close_ms, open_, high, low, close, volume, ingest_ms in zip(
            symbols,
            intervals,
            open_time[chosen].tolist(),
            close_time[chosen].tolist(),
            *(prices[k][chosen].tolist() for k in (*_PRICES, "volume")),
            ingest[chosen].tolist(),
            strict=True,
        )
    ]
    return [idx[k] for k in chosen], candles
