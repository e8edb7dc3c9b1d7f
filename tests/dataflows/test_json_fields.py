"""The strict walk of plain JSON lines (dataflows/json_fields.py) against two oracles: orjson
(what `decode_record` reads) and Arrow's JSON reader (what the columnar decoder used before).
A line the walk vouches for must be JSON orjson accepts, with every schema field's value
exactly what orjson and Arrow read; anything else must be left to Arrow."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import tick_decode
from dataflows.json_fields import read_plain

NAMES = ["symbol", "ts", "score", "provider", "id", "ingest_ts", "polarity"]


def _walk(lines: list[bytes]):
    framed = tick_decode._frame(lines)
    assert framed is not None
    plain, table, meta_lo, meta_hi = read_plain(framed.blob, framed.starts, framed.framed, tick_decode._READ_SCHEMA)
    arrow, parsed = tick_decode._read(framed)
    # the raw meta span of each plain row is the scanner's (what `_meta` reads), or none for both
    for k, lo, hi in zip(np.flatnonzero(plain).tolist(), meta_lo.tolist(), meta_hi.tolist(), strict=True):
        assert (lo, hi) == (int(framed.meta_lo[k]), int(framed.meta_hi[k])), lines[k]
        if lo >= 0:
            assert orjson.loads(framed.blob[lo:hi]) == orjson.loads(lines[k])["meta"]
    return framed, plain, table, arrow, parsed


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return _bits(a) == _bits(b)  # -0.0 is not 0.0
    return a == b


def _check(lines: list[bytes]) -> int:
    framed, plain, table, arrow, parsed = _walk(lines)
    assert not (plain & ~framed.framed).any()  # only lines the scanner framed
    rows = table.to_pylist()
    arrow_rows = arrow.to_pylist()
    for k, row in zip(np.flatnonzero(plain).tolist(), rows, strict=True):
        obj = orjson.loads(lines[k])  # plain: orjson must accept the line ...
        for name in NAMES:
            want = obj.get(name)
            if name == "score" and isinstance(want, int):
                want = float(want)
            assert _same(row[name], want), (lines[k], name, row[name], want)  # ... and read the same values
        if parsed[k]:
            assert all(_same(row[n], arrow_rows[k][n]) for n in NAMES), (lines[k], row, arrow_rows[k])
    return int(plain.sum())


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
FIELD_VALUES = {
    "symbol": st.one_of(st.sampled_from(["BTCUSDT", "ETH", "é€😀"]), st.text(max_size=6), st.integers()),
    "provider": st.one_of(st.sampled_from(["newsapi", "x"]), st.none()),
    "id": st.one_of(st.text(max_size=10), st.none()),
    "ts": st.one_of(st.integers(-(10**19), 10**19), st.just(1_763_683_200_000), st.floats(), st.none()),
    "ingest_ts": st.one_of(st.integers(0, 2 * 10**12), st.none()),
    "polarity": st.one_of(st.integers(-3, 3), st.none(), st.just(1.0)),
    "score": st.one_of(st.floats(-2, 2), st.integers(-2, 2), st.none(), st.just(-0.0)),
    "meta": st.one_of(VALUES, st.dictionaries(st.text(max_size=4), VALUES, max_size=3)),
    "_control": st.just("pause"),
    "other": VALUES,
}
OBJECTS = st.fixed_dictionaries({}, optional={k: v for k, v in FIELD_VALUES.items()})


def _spell(obj: dict, spaced: bool, ascii_only: bool) -> bytes:
    seps = (", ", ": ") if spaced else (",", ":")
    return json.dumps(obj, separators=seps, ensure_ascii=ascii_only).encode()


MUTATIONS = st.lists(st.tuples(st.integers(0, 400), st.sampled_from(list(b'{}[],:"\\ -0.eE+tfnu1a\x7f\t'))), max_size=2)


def _mutate(line: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(line)
    for at, byte in edits:
        at %= len(out) + 1
        if byte == ord("a"):
            del out[at : at + 1]
        else:
            out[at:at] = bytes([byte])
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(OBJECTS, st.booleans(), st.booleans(), MUTATIONS), min_size=1, max_size=12))
def test_plain_lines_read_what_orjson_and_arrow_read(items) -> None:
    _check([_mutate(_spell(obj, spaced, ascii_only), edits) for obj, spaced, ascii_only, edits in items])


SCORE_SPELLINGS = st.one_of(
    st.floats(-1, 1).map(repr),
    st.tuples(st.floats(-1, 1), st.integers(1, 20)).map(lambda p: f"{p[0]:.{p[1]}f}"),
    st.tuples(st.floats(-1, 1), st.integers(1, 18)).map(lambda p: f"{p[0]:.{p[1]}e}"),
    st.tuples(st.floats(-1, 1), st.integers(1, 18)).map(lambda p: f"{p[0]:.{p[1]}E}"),
    st.tuples(st.integers(-(10**17), 10**17), st.integers(-30, 30)).map(lambda p: f"{p[0]}e{p[1]}"),
    st.sampled_from(["0", "-0.0", "0.0", "1", "-1", "1e0", "0.5e+1", "5E-1", "0.000000000000000000001", "1e-22"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(SCORE_SPELLINGS, min_size=1, max_size=20))
def test_scores_are_the_correctly_rounded_double_of_their_spelling(spellings: list[str]) -> None:
    lines = [b'{"symbol":"BTCUSDT","ts":1763683200000,"score":%s,"id":"a"}' % s.encode() for s in spellings]
    framed, plain, table, arrow, parsed = _walk(lines)
    scores = table.column("score").to_pylist()
    for k, score in zip(np.flatnonzero(plain).tolist(), scores, strict=True):
        want = float(spellings[k])  # Python's float(): correctly rounded
        assert _bits(score) == _bits(want), (spellings[k], score, want)
        assert math.isfinite(score)
    _check(lines)


def test_realistic_ticks_are_plain_and_odd_ones_are_left_to_arrow() -> None:
    good = [
        b'{"symbol":"SYM175USDT","ts":1763683200555,"score":-0.2065,"polarity":-1,"provider":"twitter",'
        b'"meta":{"lang":"en","source":"sim","tags":["a",1,2.5e-3,true,false,null],"n":{}},'
        b'"id":"twitter-SYM175USDT-1763683200555-0","ingest_ts":1763683200735}',
        b'{ "symbol" : "BTC\xc3\xa9" , "ts" : 1 , "score" : 0 , "id" : null , "meta" : [ ] }',
    ]
    odd = [
        b'{"symbol":"BTC","ts":1,"score":0.5,"id":"a\\u0062"}',  # an escape: Arrow's to decode
        b'{"symbol":"BTC","ts":1,"score":0.12345678901234567}',  # 17 significant digits
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":tru}',  # not JSON
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":[1,]}',  # not JSON
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":01}',  # not JSON
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":1e400}',  # overflows: orjson refuses
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":123456789012345678901}',  # past 64 bits
        b'{"symbol":"BTC","ts":1,"score":0.5} {}',  # two values
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":[1}}',  # not JSON: brackets do not match
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":{"a":1]}',  # not JSON
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":{"a" 1}}',  # not JSON
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":nul}',  # not JSON
        b'{"symbol":"BTC","ts":1,"score":0.5,"x":"a\x01"}',  # a raw control byte: not JSON
        b'{"symbol":"BTC","ts":1,"score":1e-23}',  # exponent past the exact range
    ]
    framed, plain, table, arrow, parsed = _walk(good + odd)
    assert plain.tolist() == [True, True] + [False] * len(odd)
    assert table.to_pylist()[1] == {
        "symbol": "BTCé",
        "ts": 1,
        "score": 0.0,
        "provider": None,
        "id": None,
        "ingest_ts": None,
        "polarity": None,
    }
    _check(good + odd)


def test_what_the_scanner_refuses_is_never_plain_without_it() -> None:
    """`decode_ticks` walks every line before any scanner: the walk itself refuses control
    records, a member twice, and ill-formed UTF-8 (the scanner's rules it must not lean on)."""
    head = b'{"symbol":"BTC","ts":1,"score":0.5'
    refused = [
        head + b',"_control":"pause"}',
        head + b',"ts":2}',
        head + b',"meta":{},"meta":1}',
        head + b',"id":"a\xff"}',  # not UTF-8
        head + b',"x":"\xc0\xaf"}',  # an overlong encoding
        head + b',"x":"\xed\xa0\x80"}',  # a surrogate
        head + b',"x":"\xe2\x82"}',  # cut short
        head + b',"id":"a\x7f"}',  # DEL: the scanner's to judge
    ]
    accepted = [head + b',"id":"\xe2\x82\xac\xf0\x9f\x98\x80","meta":"m"}', head + b"}"]
    lines = refused + accepted
    blob = b"\n".join(lines)
    starts = np.concatenate([[0], np.cumsum([len(v) + 1 for v in lines])])
    plain, table, meta_lo, meta_hi = read_plain(blob, starts, np.ones(len(lines), bool), tick_decode._READ_SCHEMA)
    assert plain.tolist() == [False] * len(refused) + [True] * len(accepted)
    assert table.column("id").to_pylist() == ["€😀", None]
    assert [blob[a:b] for a, b in zip(meta_lo.tolist(), meta_hi.tolist(), strict=True)] == [b'"m"', b""]
    assert meta_lo.tolist()[1] == -1


def test_a_block_walked_in_two_halves_at_once_gives_the_one_walk_arrays(monkeypatch) -> None:  # noqa: ANN001
    """Blocks of at least PARALLEL_LINES lines are walked as two halves on two threads: every
    output array equals the single walk's, plain and non-plain lines mixed around the middle."""
    from dataflows import json_fields

    good = [
        orjson.dumps({"symbol": f"S{i % 7}USDT", "ts": 1_700_000_000_000 + i, "score": i / 1000 - 0.5,
                      "provider": "newsapi", "id": f"id{i}", "meta": {"k": [i, {"x": None}]}})
        for i in range(301)
    ]  # fmt: skip
    odd = [b'{"symbol":"A","ts":1,"score":1e400}', b'{"symbol":"A\\u0042","ts":2,"score":0.1}', b'{"ts":3']
    lines = [line for i, line in enumerate(good) for line in ([line, odd[i % 3]] if i % 50 == 0 else [line])]
    blob = np.frombuffer(b"\n".join(lines), np.uint8)
    starts = np.concatenate([[0], np.cumsum([len(v) + 1 for v in lines])]).astype(np.int64)
    framed = np.ones(len(lines), bool)
    framed[5] = False  # a line left out of the walk
    schema = tick_decode._READ_SCHEMA
    monkeypatch.setattr(json_fields, "PARALLEL_LINES", 10**9)
    plain, table, meta_lo, meta_hi = read_plain(blob.tobytes(), starts, framed, schema)
    monkeypatch.setattr(json_fields, "PARALLEL_LINES", 8)
    walked = read_plain(blob.tobytes(), starts, framed, schema)
    assert plain.sum() > 150 and (~plain).sum() >= 4  # both kinds of line, on both sides of the middle
    assert not plain[: len(lines) // 2].all() and not plain[len(lines) // 2 :].all()
    assert np.array_equal(walked[0], plain)
    assert walked[1].equals(table)
    assert np.array_equal(walked[2], meta_lo) and np.array_equal(walked[3], meta_hi)


def test_a_forked_child_walks_large_blocks_with_a_pool_of_its_own(monkeypatch) -> None:  # noqa: ANN001
    """The helper thread does not survive a fork: a child that inherits the parent's pool must
    make its own, or its first large block would wait forever for a thread that is not there."""
    import multiprocessing

    from dataflows import json_fields

    monkeypatch.setattr(json_fields, "PARALLEL_LINES", 8)
    lines = [orjson.dumps({"symbol": "AUSDT", "ts": 1_700_000_000_000 + i, "score": 0.5}) for i in range(64)]
    blob = b"\n".join(lines)
    starts = np.concatenate([[0], np.cumsum([len(v) + 1 for v in lines])]).astype(np.int64)
    framed = np.ones(len(lines), bool)
    assert read_plain(blob, starts, framed, tick_decode._READ_SCHEMA)[0].all()  # the parent's pool is made
    child = multiprocessing.get_context("fork").Process(
        target=lambda: read_plain(blob, starts, framed, tick_decode._READ_SCHEMA)
    )
    child.start()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0
