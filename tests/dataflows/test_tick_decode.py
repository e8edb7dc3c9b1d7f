"""Columnar tick decode: differential against the per-record reference `decode_record`.

The oracle for every accepted row is `tickcast.records.decode_record` on that row alone;
the oracle for the id hash is a pure-Python FNV-1a 64 + splitmix64 written here.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from itertools import islice

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import tick_decode
from dataflows.kernels.id_hash import hash_id, hash_ids
from dataflows.simulator import SimConfig, generate
from dataflows.tick_decode import TICK_COLUMNS, decode_ticks
from tickcast.records import MAX_FUTURE_MS, MAX_TS_MS, MIN_TS_MS, Rejection, decode_record

NOW = 1_763_683_300_000
MASK = (1 << 64) - 1


@dataclass(frozen=True)
class Envelope:
    """What decode_ticks gets besides the values; decode_record gets the same per value."""

    keys: list[bytes | None] | None = None
    wall_ms: int | None = None
    max_record_bytes: int = 65_536
    max_future_ms: int = MAX_FUTURE_MS

    def fast(self, values: list[bytes], hints: np.ndarray, pos_threshold: float = 0.0) -> tick_decode.FastTicks:
        return decode_ticks(
            values,
            hints,
            now_ms=NOW,
            pos_threshold=pos_threshold,
            keys=self.keys,
            max_record_bytes=self.max_record_bytes,
            max_future_ms=self.max_future_ms,
            wall_ms=self.wall_ms,
        )


def reference(value: bytes, hint: int, pos_threshold: float = 0.0, env: Envelope = Envelope(), i: int = 0) -> object:
    return decode_record(
        value,
        source="test",
        now_ms=hint if hint >= 0 else NOW,
        default_ingest="now" if hint >= 0 else "event",
        pos_threshold=pos_threshold,
        key=None if env.keys is None else env.keys[i],
        max_record_bytes=env.max_record_bytes,
        max_future_ms=env.max_future_ms,
        wall_ms=env.wall_ms,
    )


def assert_matches_reference(
    values: list[bytes],
    hints: np.ndarray,
    fast: tick_decode.FastTicks,
    pos_threshold: float = 0.0,
    env: Envelope = Envelope(),
) -> None:
    """Every ok row is a tick for decode_record, with the same values and types, in order."""
    assert fast.ok.dtype == bool and fast.ok.shape == (len(values),)
    assert fast.table.column_names == list(TICK_COLUMNS)
    assert fast.table.num_rows == int(fast.ok.sum()) == fast.id_hash.size
    rows = iter(fast.table.to_pylist())
    for i in np.flatnonzero(fast.ok):
        ref = reference(values[i], int(hints[i]), pos_threshold, env, int(i))
        assert isinstance(ref, tuple) and ref[0] == "tick", (values[i], ref)
        row = next(rows)
        assert row == ref[1], values[i]
        assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in ref[1].items()}
        assert math.copysign(1.0, row["score"]) == math.copysign(1.0, ref[1]["score"])  # -0.0 is not 0.0 in tick_id


# ---------------------------------------------------------------------------
# generators

TEXT = st.characters(exclude_categories=("Cs",))  # orjson cannot encode lone surrogates
ID_TEXT = st.characters(exclude_categories=("Cs", "Cc"))  # an id holds no control character
SYMBOLS = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHUSDT", "SYM005USDT", "X:Y/Z-1.2_3"]),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}", fullmatch=True),
)
PROVIDERS = st.one_of(
    st.sampled_from(["newsapi", "twitter", "reddit"]), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
)
IN_RANGE_MS = st.integers(MIN_TS_MS, MAX_TS_MS)
SCORES = st.one_of(st.floats(-1.0, 1.0), st.sampled_from([-1, 0, 1, -0.0, 0.5, -0.25, 5e-324, 1e-300]))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(TEXT, max_size=8),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(TEXT, max_size=5), kids, max_size=3)),
    max_leaves=6,
)
TRACKED = {"symbol", "provider", "id", "score", "ts", "ingest_ts", "polarity", "meta", "_control"}
EXTRA_KEYS = st.from_regex(r"[A-Za-z_]{1,9}", fullmatch=True).filter(lambda k: k not in TRACKED)
META = st.one_of(
    st.dictionaries(st.text(TEXT, max_size=6), JSON_VALUES, max_size=4),
    st.dictionaries(st.text(TEXT, max_size=6), JSON_VALUES, max_size=4).map(lambda d: orjson.dumps(d).decode()),
    st.sampled_from([None, {}, "", "{}", {"lang": "en", "source": "sim"}]),  # 0, false, [] are refused
)


@st.composite
def clean_ticks(draw: st.DrawFn) -> dict:
    rec = {"symbol": draw(SYMBOLS), "ts": draw(IN_RANGE_MS), "score": draw(SCORES), "provider": draw(PROVIDERS)}
    if draw(st.booleans()):
        rec["id"] = draw(st.text(ID_TEXT, min_size=1, max_size=128))
    if draw(st.booleans()):
        rec["polarity"] = draw(st.sampled_from([-1, 0, 1, None]))
    if draw(st.booleans()):  # not before ts - MAX_FUTURE_MS: the tick would be `future`
        rec["ingest_ts"] = draw(st.one_of(st.none(), st.integers(max(MIN_TS_MS, rec["ts"] - MAX_FUTURE_MS), MAX_TS_MS)))
    if draw(st.booleans()):
        rec["meta"] = draw(META)
    rec.update(draw(st.dictionaries(EXTRA_KEYS, JSON_VALUES, max_size=3)))
    return dict(draw(st.permutations(list(rec.items()))))


def dumps(rec: object, style: str) -> bytes:
    if style == "spaced":  # ", " and ": ", non-ASCII as \\u escapes (surrogate pairs above the BMP)
        return json.dumps(rec).encode()
    if style == "padded":
        return b" \t" + orjson.dumps(rec) + b"  "
    return orjson.dumps(rec)


CLEAN_STYLES = st.sampled_from(["orjson", "orjson", "spaced", "padded"])
CANDLE = {
    "symbol": "XRPUSDT",
    "interval": "1m",
    "open_time": 1_763_683_200_000,
    "close_time": 1_763_683_260_000,
    "open": 1.0,
    "high": 1.1,
    "low": 0.9,
    "close": 1.05,
    "volume": 10.0,
}
WRONG_TYPES = st.one_of(
    st.text(TEXT, max_size=6),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.lists(SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=2), SCALARS, max_size=2),
)
RAW_JUNK = [
    b"",
    b" ",
    b"\n",
    b"{",
    b"}",
    b"null",
    b"true",
    b"[]",
    b"[1, 2]",
    b'"tick"',
    b"1",
    b"{}",
    b"{}{}",
    b"\xef\xbb\xbf{}",
    b"\xff",
    b'{"a":1,}',
    b"{'a': 1}",
    b"\r\n",
]


@st.composite
def dirty_values(draw: st.DrawFn) -> bytes:
    """Anything: a tick with one or more faults, a candle, a control record, or junk bytes."""
    kind = draw(st.sampled_from(["field", "field", "raw", "text", "other"]))
    rec = draw(clean_ticks())
    if kind == "other":
        return draw(
            st.sampled_from(
                [
                    orjson.dumps(CANDLE),
                    orjson.dumps({**CANDLE, "score": 0.5}),
                    orjson.dumps({"_control": "enable_provider", "provider": "x"}),
                    orjson.dumps({**rec, "_control": "enable_provider"}),
                    orjson.dumps({**rec, "_control": None}),
                    draw(st.sampled_from(RAW_JUNK)),
                    orjson.dumps(draw(JSON_VALUES)),
                    orjson.dumps(rec, option=orjson.OPT_INDENT_2),  # valid JSON with newlines
                ]
            )
        )
    if kind == "field":
        for _ in range(draw(st.integers(1, 2))):
            name = draw(st.sampled_from(sorted(TRACKED - {"_control"})))
            fault = draw(
                st.sampled_from(["wrong", "null", "drop", "range", "float", "bool", "newline", "long", "zero", "falsy"])
            )
            if fault == "wrong":
                rec[name] = draw(WRONG_TYPES)
            elif fault == "null":
                rec[name] = None
            elif fault == "drop":
                rec.pop(name, None)
            elif fault == "range":
                rec[name] = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(-1e15, 1e15)))
            elif fault == "float":
                rec[name] = float(rec.get(name) or 0) if isinstance(rec.get(name), int) else 1.0
            elif fault == "bool":
                rec[name] = draw(st.booleans())
            elif fault == "newline":
                rec[name] = f"{rec.get(name) or 'X'}\n"
            elif fault == "falsy":  # meta 0 / false / []: once taken as "{}", now refused in both paths
                rec[name] = draw(st.sampled_from([0, False, [], 0.0]))
            elif fault == "long":
                rec[name] = draw(st.sampled_from(["x" * 129, "é" * 128, "😀" * 129, "x" * 33, ""]))
            else:
                rec[name] = draw(st.sampled_from([-0.0, 0.0, 0, "0", "NaN", 1.0000000000000002]))
        return dumps(rec, draw(CLEAN_STYLES))
    value = dumps(rec, draw(CLEAN_STYLES))
    if kind == "text":  # text-level edits that keep or break JSON
        edit = draw(
            st.sampled_from(
                [
                    "nan",
                    "dupkey",
                    "escapedkey",
                    "newline_in_string",
                    "trailing",
                    "crlf",
                    "bom",
                    "negzero",
                    "int_exp",
                    "bad_utf8",
                    "deep",
                    "ctrl",
                    "id_escape",
                    "id_del",
                    "future",
                    "huge",
                    "dup_escaped",
                ]
            )
        )
        body = value.rstrip()[:-1]
        return {
            "nan": body + b',"x":NaN}',
            "dupkey": body + draw(st.sampled_from([b',"score":0.3}', b',"meta":{}}', b',"ts":null}', b',"id":"b"}'])),
            "escapedkey": value.replace(b'"score"', b'"\\u0073core"').replace(b'"meta"', b'"\\u006deta"'),
            "newline_in_string": value.replace(b'":"', b'":"\n', 1),
            "trailing": value + draw(st.sampled_from([b"x", b"{}", b",", b" 1"])),
            "crlf": value + b"\r",
            "bom": b"\xef\xbb\xbf" + value,
            "negzero": body + b',"score":-0}'
            if b'"score"' not in body
            else value.replace(b'"score":', b'"score":-0,"s":'),
            "int_exp": body + b',"ingest_ts":1.7636832e12}' if b'"ingest_ts"' not in body else value,
            "bad_utf8": body + b',"note":"\xed\xa0\x80"}',
            "deep": body + b',"x":' + b"[" * 70 + b"]" * 70 + b"}",
            "ctrl": body + b',"x":"a\tb"}',
            "id_escape": orjson.dumps({**rec, "id": draw(st.sampled_from(["a\u0001b", "a\nb", 'a"b', "\u00e9"]))}),
            "id_del": orjson.dumps({**rec, "id": "a\x7fb"}),
            "future": orjson.dumps({**rec, "ts": min(MAX_TS_MS, int(rec.get("ingest_ts") or rec["ts"]) + 3_600_000)}),
            "huge": orjson.dumps({**rec, "meta": {"text": "x" * 70_000}}),
            "dup_escaped": body + b',"\\u0073ymbol":"OTHER"}',
        }[edit]
    cut = draw(st.integers(0, len(value)))
    return value[:cut] + draw(st.binary(max_size=3)) + value[cut + draw(st.integers(0, 3)) :]


HINTS = st.one_of(st.just(-1), st.integers(0, 2**62))
KEYS = st.one_of(st.none(), st.sampled_from([b"BTCUSDT", b"", b"\xff"]), st.binary(max_size=8))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[bytes], list[bool], np.ndarray, float, Envelope]:
    """Values (clean ticks and dirty ones), which are clean, hints, pos_threshold, envelope.
    A clean tick's hint and key are ones it is valid with; a dirty value's are anything."""
    values, clean, hints, keys = [], [], [], []
    for is_clean in draw(st.lists(st.booleans(), min_size=1, max_size=40)):
        if is_clean:
            rec = draw(clean_ticks())
            values.append(dumps(rec, draw(CLEAN_STYLES)))
            hints.append(
                -1
                if "ingest_ts" in rec
                else draw(st.one_of(st.just(-1), st.integers(rec["ts"] - MAX_FUTURE_MS, 2**62)))
            )
            keys.append(draw(st.sampled_from([None, rec["symbol"].encode()])))
        else:
            values.append(draw(dirty_values()))
            hints.append(draw(HINTS))
            keys.append(draw(KEYS))
        clean.append(is_clean)
    env = Envelope(
        keys=draw(st.sampled_from([None, keys])),
        wall_ms=draw(st.sampled_from([None, 2**62])),  # the wall-clock rule; its edge: test_wall_clock_*
    )
    return values, clean, np.array(hints, np.int64), draw(st.sampled_from([0.0, 0.0, 0.1, 0.5])), env


# ---------------------------------------------------------------------------
# differential


@settings(deadline=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches())
def test_accepted_rows_equal_the_reference_and_clean_ticks_are_accepted(batch) -> None:
    values, clean, hints, threshold, env = batch
    # Bisect to single rows so a clean tick never shares a failed Arrow chunk with a bad line.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tick_decode, "MIN_BISECT_ROWS", 1)
        fast = env.fast(values, hints, threshold)
    assert_matches_reference(values, hints, fast, threshold, env)
    for i in np.flatnonzero(clean):
        ref = reference(values[i], int(hints[i]), threshold, env, int(i))
        assert isinstance(ref, tuple) and ref[0] == "tick", (values[i], ref)  # the generator's own check
        assert fast.ok[i], values[i]
    for i in np.flatnonzero(~fast.ok):  # the per-record path decides these, and never raises
        assert isinstance(reference(values[i], int(hints[i]), threshold, env, int(i)), Rejection | tuple)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches())
def test_default_bisect_is_sound(batch) -> None:
    values, _, hints, threshold, env = batch
    env = Envelope(keys=None if env.keys is None else env.keys * 3, wall_ms=env.wall_ms)
    fast = env.fast(values * 3, np.tile(hints, 3), threshold)
    assert_matches_reference(values * 3, np.tile(hints, 3), fast, threshold, env)


@pytest.mark.parametrize(
    "value, why",
    [
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p","x":NaN}', "NaN token: Arrow takes it"),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p"}{}', "two objects: Arrow reads 2 rows"),
        (b'\xef\xbb\xbf{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p"}', "BOM: Arrow skips it"),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":-0,"provider":"p"}', "-0: Arrow -0.0, orjson 0"),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":-0 ,"provider":"p"}', "-0 and a blank"),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p","_control":null}', "a control record"),
        (
            b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p","\\u005fcontrol":"x"}',
            "escaped _control",
        ),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p","meta":{},"meta":[]}', "meta twice"),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p","x":"\xff"}', "invalid UTF-8"),
        (b'{"symbol":"BTCUSDT\\n","ts":1763683200123,"score":0.4,"provider":"p"}', "trailing newline in symbol"),
        (b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.4,"provider":"p","meta":"[1]"}', "meta string of a list"),
        (b"null", "a null line crashes Arrow"),
        (b"", "empty: Arrow skips blank lines"),
        (b" ", "blank"),
        (b"{", "one byte"),
        (b'{"symbol":"BTCUSDT","x":"\\', "a trailing backslash must not swallow the line end"),
        (b'{"symbol":"BTCUSDT","x":"\\\r', "nor a carriage return"),
    ],
)
def test_values_arrow_would_get_wrong_are_not_ok(value: bytes, why: str) -> None:
    clean = orjson.dumps({"symbol": "ETHUSDT", "ts": 1_763_683_200_000, "score": 0.1, "provider": "p"})
    fast = decode_ticks([clean, value, clean], np.array([-1, -1, -1]), now_ms=NOW)
    assert fast.ok.tolist() == [True, False, True], why
    assert_matches_reference([clean, value, clean], np.array([-1, -1, -1]), fast)


def test_meta_text_and_defaults_follow_the_reference() -> None:
    base = {"symbol": "XRPUSDT", "ts": 1_763_683_200_123, "score": 0.42, "provider": "newsapi"}
    metas = [{"b": 1, "a": [1.5, None]}, '{"url": "x"}', None, "", {}, {}, "{}"]
    values = [orjson.dumps({**base, "meta": m}) for m in metas] + [orjson.dumps(base)]
    hints = np.array([base["ts"] + 5_000, -1] * 4, np.int64)
    fast = decode_ticks(values, hints, now_ms=NOW, pos_threshold=0.5)
    assert fast.ok.all()
    table = fast.table.to_pydict()
    assert table["meta"] == ['{"b":1,"a":[1.5,null]}', '{"url":"x"}'] + ["{}"] * 6
    assert table["ingest_ts"] == [base["ts"] + 5_000, base["ts"]] * 4  # the hint, or the event time without one
    assert table["polarity"] == [0] * 8  # 0.42 is inside the 0.5 dead band
    assert_matches_reference(values, hints, fast, 0.5)


def test_empty_batch_and_hint_shape() -> None:
    fast = decode_ticks([], np.empty(0, np.int64), now_ms=NOW)
    assert fast.ok.size == 0 and fast.table.num_rows == 0 and fast.table.column_names == list(TICK_COLUMNS)
    with pytest.raises(ValueError, match="one entry per value"):
        decode_ticks([b"{}"], np.empty(0, np.int64), now_ms=NOW)


# ---------------------------------------------------------------------------
# bisect


def simulator_values(n: int) -> list[bytes]:
    ticks = (r for r in generate(SimConfig(symbols=8, hours=float("inf"), ticks_per_minute=30.0)) if "score" in r)
    return [orjson.dumps(r) for r in islice(ticks, n)]


TICK = b'{"symbol":"BTCUSDT","ts":1763683200123,"score":0.42,"provider":"newsapi"'
# Lines the framing scan lets through but Arrow's parser refuses: each fails its whole chunk.
ARROW_FAILS = [
    TICK + b',"x":tru}',
    TICK + b',"x":01}',
    TICK + b',"x":[1,]}',
    TICK + b',"x":"\\u12zz"}',
    TICK + b',"x":-}',
]
# Type mismatches, refused by the framing scan before Arrow sees them.
TYPE_MISMATCHES = [
    TICK.replace(b"1763683200123", b'"abc"') + b"}",
    TICK.replace(b"0.42", b'"0.42"') + b"}",
    TICK.replace(b"1763683200123", b"1763683200123.0") + b"}",
    TICK + b',"polarity":true}',
    TICK + b',"id":12}',
]


@pytest.mark.parametrize("bad_lines", [ARROW_FAILS, TYPE_MISMATCHES], ids=["arrow-fails", "type-mismatch"])
def test_a_few_bad_lines_leave_the_rest_on_the_fast_path(bad_lines: list[bytes], monkeypatch) -> None:
    values = simulator_values(10_000)
    positions = sorted(random.Random(7).sample(range(len(values)), len(bad_lines)))
    for pos, line in zip(positions, bad_lines):
        values[pos] = line
    framed = tick_decode._frame(values).framed[positions]  # type: ignore[union-attr]
    assert framed.all() == (bad_lines is ARROW_FAILS)  # which path the test exercises
    hints = np.full(len(values), -1, np.int64)
    monkeypatch.setattr(tick_decode, "MIN_BISECT_ROWS", 1)
    fast = decode_ticks(values, hints, now_ms=NOW)
    assert np.flatnonzero(~fast.ok).tolist() == positions
    assert_matches_reference(values, hints, fast)


def test_default_bisect_confines_a_failure_to_its_small_chunk() -> None:
    values = simulator_values(10_000)
    positions = [100, 2_500, 2_501, 7_000, 9_999]
    for pos, line in zip(positions, ARROW_FAILS):
        values[pos] = line
    fast = decode_ticks(values, np.full(len(values), -1, np.int64), now_ms=NOW)
    lost = np.flatnonzero(~fast.ok)
    assert set(positions) <= set(lost.tolist())
    assert lost.size <= len(positions) * tick_decode.MIN_BISECT_ROWS
    assert all(min(abs(i - p) for p in positions) < tick_decode.MIN_BISECT_ROWS for i in lost)


# ---------------------------------------------------------------------------
# id hash


def fnv1a_splitmix(s: str) -> int:
    h = 0xCBF29CE484222325
    for byte in s.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & MASK
    h ^= h >> 31
    return h - (1 << 64) if h >> 63 else h


@settings(deadline=None, max_examples=100)
@given(st.lists(st.text(TEXT, max_size=40), max_size=30))
def test_hash_ids_is_fnv1a_splitmix64(ids: list[str]) -> None:
    got = hash_ids(ids)
    assert got.dtype == np.int64
    assert got.tolist() == [fnv1a_splitmix(s) for s in ids]
    if ids:
        assert hash_id(ids[0]) == fnv1a_splitmix(ids[0])


def test_hash_ids_refuses_a_missing_id() -> None:
    with pytest.raises(ValueError, match="null"):
        hash_ids(["a", None])  # type: ignore[list-item]


def test_hash_is_the_same_in_another_process() -> None:
    ids = ["", "a", "twitter-BTCUSDT-1763683200037-0", "é😀", "x" * 128]
    code = "import sys, json; from dataflows.kernels.id_hash import hash_ids; print(json.dumps(hash_ids(sys.argv[1:]).tolist()))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, *ids], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == [fnv1a_splitmix(s) for s in ids] == hash_ids(ids).tolist()


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches())
def test_decoded_id_hash_equals_hash_ids(batch) -> None:
    values, _, hints, _, _ = batch
    fast = decode_ticks(values, hints, now_ms=NOW)
    ids = fast.table.column("id").to_pylist()
    assert fast.id_hash.tolist() == hash_ids(ids).tolist() == [fnv1a_splitmix(s) for s in ids]


# ---------------------------------------------------------------------------
# throughput (printed; run with -s, or `python -m dataflows.tick_decode` for 200k rows)


def test_bench_clean_simulator_ticks_all_take_the_fast_path(capsys) -> None:
    figures = tick_decode.bench(n=20_000, repeat=1)
    with capsys.disabled():
        print(f"\n[tick_decode bench] {figures}")
    assert figures["ok_share"] == 1.0


# ---------------------------------------------------------------------------
# the envelope rules: size, Kafka key, future (issue 15 items 7-9), each against the reference

GOOD = {"symbol": "BTCUSDT", "ts": 1_763_683_200_000, "score": 0.1, "provider": "p", "id": "a"}


def _decode(values: list[bytes], hints: list[int], env: Envelope) -> tick_decode.FastTicks:
    fast = env.fast(values, np.array(hints, np.int64))
    assert_matches_reference(values, np.array(hints, np.int64), fast, env=env)
    return fast


def test_records_over_the_size_limit_are_left_out_before_arrow(monkeypatch: pytest.MonkeyPatch) -> None:
    big = orjson.dumps({**GOOD, "meta": {"text": "x" * 70_000}})
    small = orjson.dumps(GOOD)
    blobs: list[bytes] = []
    read_json = tick_decode.pj.read_json
    monkeypatch.setattr(
        tick_decode.pj,
        "read_json",
        lambda src, **kw: blobs.append(src.read()) or read_json(pa.py_buffer(blobs[-1]), **kw),
    )
    walked: list[list[bool]] = []  # the lines the plain walk was let read (json_fields.read_plain)
    read_plain = tick_decode.read_plain
    monkeypatch.setattr(
        tick_decode,
        "read_plain",
        lambda blob, starts, framed, schema: walked.append(framed.tolist()) or read_plain(blob, starts, framed, schema),
    )
    fast = _decode([small, big, small], [-1, -1, -1], Envelope())
    assert fast.ok.tolist() == [True, False, True]
    assert all(b"xxxx" not in b for b in blobs)  # the 70 kB line was blanked, never parsed by Arrow ...
    assert walked == [[True, False, True]]  # ... nor by the plain walk
    assert _decode([small, small], [-1, -1], Envelope(max_record_bytes=len(small))).ok.all()  # the limit itself
    assert not _decode([small], [-1], Envelope(max_record_bytes=len(small) - 1)).ok.any()
    assert reference(big, -1).reason.startswith("too_large")


def test_kafka_keys_must_be_the_symbol() -> None:
    values = [orjson.dumps(GOOD)] * 5
    keys = [b"BTCUSDT", None, b"ETHUSDT", b"", b"BTCUSDT\x00"]
    fast = _decode(values, [GOOD["ts"]] * 5, Envelope(keys=keys))
    assert fast.ok.tolist() == [True, True, False, False, False]
    assert reference(values[2], GOOD["ts"], env=Envelope(keys=keys), i=2).reason.startswith("key_mismatch")
    with pytest.raises(ValueError, match="keys must have one entry per value"):
        decode_ticks(values, np.full(5, -1), now_ms=NOW, keys=keys[:2])


def test_future_event_times_against_ingest_ts_hint_and_wall_clock() -> None:
    ts = GOOD["ts"]
    values = [
        orjson.dumps({**GOOD, "ingest_ts": ts - MAX_FUTURE_MS}),  # ts exactly at the allowed skew
        orjson.dumps({**GOOD, "ingest_ts": ts - MAX_FUTURE_MS - 1}),  # one ms beyond
        orjson.dumps(GOOD),  # the hint (Kafka timestamp) is its ingest_ts
        orjson.dumps(GOOD),
        orjson.dumps(GOOD),  # no hint: ingested at its event time, never future
    ]
    hints = [-1, -1, ts - MAX_FUTURE_MS, ts - MAX_FUTURE_MS - 1, -1]
    assert _decode(values, hints, Envelope()).ok.tolist() == [True, False, True, False, True]
    assert reference(values[1], -1).reason.startswith("future: 'ts'=")
    # live: an ingest_ts (or a file record's event time) beyond the wall clock + skew
    wall = ts - 2 * MAX_FUTURE_MS - 1  # every ingest_ts here is more than the skew ahead of it
    fast = _decode(values, hints, Envelope(wall_ms=wall))
    assert fast.ok.tolist() == [False, False, False, False, False]
    assert reference(values[2], hints[2], env=Envelope(wall_ms=wall)).reason.startswith("future: ingest_ts=")
    assert _decode(values, hints, Envelope(wall_ms=ts - MAX_FUTURE_MS)).ok.tolist() == [True, False, True, False, True]


@pytest.mark.parametrize(
    ("id_json", "ok"),
    [
        (b'"plain"', True),
        (b'"\\u0041\\u00e9\\/\\"\\\\"', True),  # escapes of ordinary characters stay on the fast path
        (b'"a\\u0001"', False),
        (b'"a\\n"', False),
        (b'"a\\t"', False),
        (b'"a\\u007F"', False),
        (b'"a\x7f"', False),  # DEL is valid raw JSON
        (b'"\\u001f"', False),
    ],
)
def test_ids_with_control_characters_are_refused_in_both_paths(id_json: bytes, ok: bool) -> None:
    value = orjson.dumps({k: v for k, v in GOOD.items() if k != "id"})[:-1] + b',"id":' + id_json + b"}"
    other = orjson.dumps({**GOOD, "meta": {"t": "a\x7fb\n"}})  # control characters in meta are fine
    fast = _decode([value, other], [-1, -1], Envelope())
    assert fast.ok.tolist() == [ok, True]
    assert isinstance(reference(value, -1), tuple) == ok


@pytest.mark.parametrize(
    "tail",
    [
        b',"symbol":"ETHUSDT"}',
        b',"\\u0073ymbol":"ETHUSDT"}',
        b',"ts":1763683200001}',
        b',"meta":{},"meta":{}}',
    ],
)
def test_duplicated_fields_are_refused_in_both_paths(tail: bytes) -> None:
    value = orjson.dumps(GOOD)[:-1] + tail
    assert not _decode([value], [-1], Envelope()).ok.any()
    assert reference(value, -1).reason.startswith("duplicate_key")
