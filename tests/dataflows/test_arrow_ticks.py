"""Parquet rows decoded from their Arrow columns (dataflows/arrow_ticks.py) give what their row
dicts give: the same accepted ticks and, for every row the columnar checks leave, the same
rejected_records row (the per-record path decides those, by construction). References: the
per-record path alone (`decode_record` on each `to_pylist` dict) and the dict path the file
source used before (dicts as JSON through `decode_ticks`)."""

from __future__ import annotations

import pickle
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import decode as decode_module
from dataflows import file_lines
from dataflows.arrow_rows import ArrowBlock, ArrowRows, joined
from dataflows.arrow_ticks import columnar, decode_table
from dataflows.decode import DecodeConfig, DecodeLogic
from dataflows.simulator import SimConfig, generate
from dataflows.sources import FileReplaySource
from tests.dataflows.partitions import drain
from tests.dataflows.test_decode_gate import _full, _per_record_only, _rejected

START = 1_763_683_200_000
NAME = "file:x.parquet"
CONFIGS = [
    DecodeConfig(),
    DecodeConfig(wall_clock=True, disable_streak=2),
    DecodeConfig(max_record_bytes=600, pos_threshold=0.2),
]


def realistic(n: int, symbols: int = 20) -> list[dict]:
    ticks = (r for r in generate(SimConfig(symbols=symbols, hours=float("inf"), start_ms=START)) if "score" in r)
    return list(islice(ticks, n))


def outcomes(table: pa.Table, config: DecodeConfig) -> tuple[tuple, tuple, tuple]:
    """(Arrow path, dict path, per-record path) `_full` outputs of one activation of these rows."""
    rows = table.to_pylist()
    decode_table(table, max_record_bytes=config.max_record_bytes)  # no fault (on_batch would hide it)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_module.time, "time", lambda: 1_800_000_000.0)
        arrow, _ = DecodeLogic(config, None).on_batch([ArrowBlock(NAME, ArrowRows(table))])
        dicts, _ = DecodeLogic(config, None).on_batch([[(NAME, r, None) for r in table.to_pylist()]])
        mp.setattr(decode_module, "decode_ticks", _per_record_only)
        one_by_one, _ = DecodeLogic(config, None).on_batch([[(NAME, r, None) for r in rows]])
    assert not any(r["reason"].startswith("decoder_error") for r in _rejected(arrow))
    return _full(arrow), _full(dicts), _full(one_by_one)


@pytest.mark.parametrize("config", CONFIGS)
def test_realistic_rows_decode_column_wise_as_their_dicts(config: DecodeConfig, monkeypatch) -> None:
    table = pa.Table.from_pylist(realistic(3_000))
    assert columnar(table.schema) and pa.types.is_struct(table.schema.field("meta").type)
    arrow, dicts, one_by_one = outcomes(table, config)
    assert arrow == dicts == one_by_one
    if config.max_record_bytes >= 1_000:  # clean rows: not one goes the per-record way
        monkeypatch.setattr(decode_module, "decode_record", lambda *a, **k: 1 / 0)
        fast = decode_table(table)
        assert fast.ok.all() and fast.table.num_rows == 3_000


def _odd_table() -> pa.Table:
    """Every column kind the columnar checks take, with the values they must leave to the
    per-record path (and a few good ones around them)."""
    t = START
    nan, inf = float("nan"), float("inf")
    rows = [
        # ts, ingest_ts, score, polarity, id, symbol, provider, meta
        (t, t + 5, 0.1, 1.0, "ok-a", "BTCUSDT", "p", '{"a": 1}'),
        (t + 1.5, None, 0.1, None, "frac-ts", "BTCUSDT", "p", None),
        (nan, None, 0.1, None, "nan-ts", "BTCUSDT", "p", None),
        (t, nan, 0.1, None, "nan-ingest", "BTCUSDT", "p", None),
        (t, inf, 0.1, None, "inf-ingest", "BTCUSDT", "p", None),
        (t, -inf, 0.1, None, "-inf-ingest", "BTCUSDT", "p", None),
        (t, None, nan, None, "nan-score", "BTCUSDT", "p", None),
        (t, None, 1.5, None, "big-score", "BTCUSDT", "p", None),
        (t, None, None, None, "no-score", "BTCUSDT", "p", None),
        (t, None, 0.3, nan, "nan-polarity", "BTCUSDT", "p", None),
        (t, None, 0.3, 2.0, "two-polarity", "BTCUSDT", "p", None),
        (t, None, -0.3, -1.0, "ok-b", "ETHUSDT", "p", ""),
        (t, None, 0.3, None, "ctl\x01id", "BTCUSDT", "p", None),
        (t, None, 0.3, None, "del\x7fid", "BTCUSDT", "p", None),
        (t, None, 0.3, None, "", "BTCUSDT", "p", None),
        (t, None, 0.3, None, "x" * 129, "BTCUSDT", "p", None),
        (t, None, 0.3, None, None, "BTCUSDT", "p", '{"b": [1, 2]}'),
        (t, None, 0.3, None, "bad-symbol", "BTC USDT", "p", None),
        (t, None, 0.3, None, "no-symbol", None, "p", None),
        (t, None, 0.3, None, "no-provider", "BTCUSDT", None, None),
        (t, None, 0.3, None, "meta-array", "BTCUSDT", "p", "[1]"),
        (t, None, 0.3, None, "meta-text", "BTCUSDT", "p", "not json"),
        (t, None, 0.3, None, "meta-long", "BTCUSDT", "p", '{"k": "' + "é" * 400 + '"}'),
        (t + 120_000, t, 0.3, None, "future", "BTCUSDT", "p", None),
        (1e300, None, 0.3, None, "huge-ts", "BTCUSDT", "p", None),
        (946_684_799_999.0, None, 0.3, None, "early-ts", "BTCUSDT", "p", None),
        (t + 9, None, -0.0, 0.0, None, "BTCUSDT", "p", "{}"),
    ]
    names = ("ts", "ingest_ts", "score", "polarity", "id", "symbol", "provider", "meta")
    columns = list(zip(*rows, strict=True))
    columns[6] = tuple(p and f"{p}{i}" for i, p in enumerate(columns[6]))  # no streak disables a provider
    types = (pa.float64(), pa.float64(), pa.float64(), pa.float32(), pa.large_string(), pa.string(), pa.string())
    arrays = [pa.array(c, ty) for c, ty in zip(columns, (*types, pa.string()), strict=True)]
    return pa.Table.from_arrays(arrays, names=list(names))


@pytest.mark.parametrize("config", CONFIGS)
def test_odd_values_go_to_the_per_record_path_with_their_reasons(config: DecodeConfig) -> None:
    table = _odd_table()
    arrow, dicts, one_by_one = outcomes(table, config)
    assert arrow == one_by_one == dicts
    fast = decode_table(table, max_record_bytes=config.max_record_bytes, pos_threshold=config.pos_threshold)
    ok_ids = set(fast.table.column("id").to_pylist())
    assert {"ok-a", "ok-b"} <= ok_ids and not ok_ids & {"nan-ts", "ctl\x01id", "meta-array", "huge-ts", "future"}


def test_struct_meta_with_null_children_and_int_columns() -> None:
    """A struct meta stores what its row dict holds (a null child as null, a null struct as
    {}); int and unsigned time columns, an int score, int8 polarity."""
    meta = pa.array(
        [{"lang": "en", "n": 1, "f": True}, {"lang": None, "n": 2, "f": False}, None, {"lang": "en", "n": 1, "f": True}]
        * 3,
        pa.struct([("lang", pa.string()), ("n", pa.int64()), ("f", pa.bool_())]),
    )
    n = len(meta)
    table = pa.table(
        {
            "symbol": ["XRPUSDT"] * n,
            "ts": pa.array([START + i for i in range(n)], pa.uint64()),
            "ingest_ts": pa.array([START + i + 5 if i % 4 else None for i in range(n)], pa.int64()),
            "score": pa.array([(i % 3) - 1 for i in range(n)], pa.int32()),
            "polarity": pa.array([None, 1, -1, 0] * 3, pa.int8()),
            "provider": ["p"] * n,
            "meta": meta,
        }
    )
    assert columnar(table.schema)
    for config in CONFIGS:
        arrow, dicts, one_by_one = outcomes(table, config)
        assert arrow == dicts == one_by_one
    metas = decode_table(table).table.column("meta").to_pylist()
    assert metas[:3] == ['{"lang":"en","n":1,"f":true}', '{"lang":null,"n":2,"f":false}', "{}"]


def test_unsigned_values_past_int64_are_left_to_the_per_record_path() -> None:
    table = pa.table(
        {
            "symbol": ["XRPUSDT"] * 4,
            "provider": ["p", "q", "r", "s"],
            "score": [0.1] * 4,
            "ts": pa.array([START, 2**64 - 1, 2**63, START + 1], pa.uint64()),
            "ingest_ts": pa.array([2**63 + 5, START, None, START + 2], pa.uint64()),
            "polarity": pa.array([1, 2**64 - 1, 0, 1], pa.uint64()),
        }
    )
    assert decode_table(table).ok.tolist() == [False, False, False, True]  # no fault of the columnar path
    arrow, dicts, one_by_one = outcomes(table, CONFIGS[0])
    assert arrow == dicts == one_by_one and len(arrow[2]) == 3


def test_schemas_the_columnar_checks_cannot_read_stay_dicts(tmp_path: Path) -> None:
    base = {"symbol": ["XRPUSDT"], "ts": [START], "score": [0.1], "provider": ["p"]}
    others = {
        "extra column": {**base, "note": ["x"]},
        "control": {**base, "_control": ["enable_provider"]},
        "candle column": {**base, "close_time": [START]},
        "timestamp": {**base, "ts": pa.array([START], pa.timestamp("ms", tz="UTC"))},
        "bool score": {**base, "score": [True]},
        "map meta": {**base, "meta": pa.array([[("a", "b")]], pa.map_(pa.string(), pa.string()))},
        "nested meta": {**base, "meta": [{"a": {"b": 1}}]},
        "no score": {k: v for k, v in base.items() if k != "score"},
    }
    for label, columns in others.items():
        table = pa.table(columns)
        assert not columnar(table.schema), label
        path = tmp_path / "t.parquet"
        pq.write_table(table, path)
        records = [r for c in file_lines.file_chunks(path) for r in c.records]
        assert records == table.to_pylist() and all(r.__class__ is dict for r in records), label
        assert not decode_table(table).ok.any()
    assert columnar(pa.table(base).schema)


def test_arrow_rows_read_like_their_dicts_and_the_source_resumes(tmp_path: Path, monkeypatch) -> None:
    rows = realistic(1_000)
    rows[10:20] = sorted(rows[10:20], key=lambda r: -r["ingest_ts"])  # out of order: the file is sorted
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=300)
    monkeypatch.setattr(file_lines, "PARQUET_BATCH_ROWS", 128)
    expect = sorted(rows, key=lambda r: r["ingest_ts"])
    chunks = list(file_lines.file_chunks(path))
    assert all(isinstance(c.records, ArrowRows) for c in chunks)
    assert [r for c in chunks for r in c.records] == expect
    held = joined([[], chunks[0].records[5:], chunks[0].records[:5]])
    assert isinstance(held, ArrowRows) and list(held) == expect[5:] + expect[:5] and held[-1] == expect[4]
    assert joined([[expect[0]], chunks[0].records[:1]]) == [expect[0], expect[0]]
    for resume in (None, 333):
        part = FileReplaySource([path], batch_size=128).build_part("s", "files", resume)
        blocks = drain(part)
        assert all(isinstance(b, ArrowBlock) for b in blocks)
        assert [r for b in blocks for r in b] == [(f"file:{path.name}", r, None) for r in expect[resume or 0 :]]
    block = ArrowBlock.concat(blocks[:2])
    block.prefetch(np.array([0, 130]))
    assert block[130] == blocks[1][2] and len(block) == 256 and block[0:2] == list(blocks[0])[:2]
    assert pickle.loads(pickle.dumps(block)) == block  # items crossing processes (cluster flows)


_TIMES = st.one_of(st.none(), st.integers(START - 10**6, START + 10**6), st.floats(allow_nan=True, allow_infinity=True))
_NAMES = st.one_of(st.none(), st.sampled_from(["XRPUSDT", "p", "", "a b", "é", "x\x00", "z" * 130]))
_ROWS = st.fixed_dictionaries(
    {
        "ts": _TIMES,
        "ingest_ts": _TIMES,
        "score": st.one_of(st.none(), st.floats(-1.5, 1.5), st.sampled_from([float("nan"), -0.0, 1.0])),
        "polarity": st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 1.0, 0.5, 3.0, float("nan")])),
        "id": _NAMES,
        "symbol": _NAMES,
        "provider": _NAMES,
        "meta": st.one_of(_NAMES, st.sampled_from(['{"a":1}', "[]", '{"a":', '{"a":{"b":null}}'])),
    }
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ROWS, min_size=1, max_size=25), st.sampled_from(CONFIGS))
def test_any_rows_decode_as_their_dicts(rows: list[dict], config: DecodeConfig) -> None:
    types = {"ts": pa.float64(), "ingest_ts": pa.float64(), "score": pa.float64(), "polarity": pa.float64()}
    table = pa.table({k: pa.array([r[k] for r in rows], types.get(k, pa.string())) for k in rows[0]})
    arrow, _, one_by_one = outcomes(table, config)
    assert arrow == one_by_one


_KEY_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2.0**63, -(2.0**63), 2.0**63 - 1024, 9.5e18, -1.5]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_KEY_VALUES, _KEY_VALUES, st.integers(0, 2**64 - 1)), min_size=1, max_size=20))
def test_file_keys_read_column_wise_are_the_row_keys(rows: list[tuple]) -> None:
    ingest, ts, close = zip(*rows, strict=True)
    ints = [None if v is None else int(v) if isinstance(v, int) else None for v in ingest]
    table = pa.table(
        {
            "ingest_ts": pa.array(ints, pa.int64()),
            "ts": pa.array([None if v is None else float(v) for v in ts], pa.float64()),
            "close_time": pa.array(close, pa.uint64()),
        }
    )
    for columns in (["ingest_ts", "ts", "close_time"], ["ts", "close_time"], ["close_time"], ["ts"]):
        part = table.select(columns)
        assert file_lines._parquet_keys(part).tolist() == file_lines._parquet_keys_of_rows(part).tolist()


_META_STRUCT = pa.struct([("lang", pa.string()), ("n", pa.int64()), ("f", pa.bool_())])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "lang": st.one_of(st.none(), st.text(max_size=4)),
                    "n": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
                    "f": st.one_of(st.none(), st.booleans()),
                }
            ),
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(CONFIGS),
)
def test_any_struct_meta_is_stored_as_its_row_dict_says(metas: list, config: DecodeConfig) -> None:
    n = len(metas)
    table = pa.table(
        {
            "symbol": ["XRPUSDT"] * n,
            "ts": [START + i for i in range(n)],
            "score": [0.5] * n,
            "provider": [f"p{i}" for i in range(n)],
            "meta": pa.array(metas, _META_STRUCT),
        }
    )
    arrow, _, one_by_one = outcomes(table, config)
    assert arrow == one_by_one


def test_a_folder_of_parquet_files_of_one_schema_stays_columns_and_names_each_rows_file(
    tmp_path: Path, monkeypatch
) -> None:
    """Daily exports (one schema) merge as Arrow columns, not one dict per row: each merged
    row keeps the name of the file it came from, in the blocks the source emits, in the rows
    the decode step refuses, and its outputs are those of the same records as dicts. Files of
    different schemas still merge (as dicts)."""
    rows = realistic(3_000)
    for r in rows[::97]:
        r["score"] = 7.5  # refused: out of range, named by its file
    days = [rows[k::3] for k in range(3)]  # interleaved in ingest time: the merge takes turns
    days[2][5:15] = sorted(days[2][5:15], key=lambda r: -r["ingest_ts"])  # one file out of order
    paths = [tmp_path / f"day{k}.parquet" for k in range(3)]
    for path, day in zip(paths, days, strict=True):
        pq.write_table(pa.Table.from_pylist(day), path, row_group_size=200)
    monkeypatch.setattr(file_lines, "PARQUET_BATCH_ROWS", 128)
    chunks = list(file_lines.merged_chunks(paths))
    assert all(isinstance(records, ArrowRows) for _, records, _ in chunks)
    expect = sorted(
        ((r["ingest_ts"], k, j, r) for k, day in enumerate(days) for j, r in enumerate(day)), key=lambda e: e[:2]
    )
    # (ties in ingest_ts: file order; the out-of-order file's lines: sorted stably within it)
    got = [(f"file:{paths[f].name}", r) for _, records, files in chunks for r, f in zip(records, files.tolist())]
    assert sorted(got, key=lambda g: (g[1]["ingest_ts"], g[0])) == [
        (f"file:day{k}.parquet", r) for _, k, _, r in expect
    ]
    assert [g[1]["ingest_ts"] for g in got] == sorted(g[1]["ingest_ts"] for g in got)
    blocks = drain(FileReplaySource(paths, batch_size=500).build_part("s", "files", None))
    assert all(isinstance(b, ArrowBlock) for b in blocks)
    records = [r for b in blocks for r in b]
    assert records == [(name, r, None) for name, r in got]
    merged = ArrowBlock.concat(blocks[:3])
    assert list(merged) == records[:1500] and merged[700] == records[700]
    config = DecodeConfig()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_module.time, "time", lambda: 1_800_000_000.0)
        arrow, _ = DecodeLogic(config, None).on_batch([merged])
        dicts, _ = DecodeLogic(config, None).on_batch([records[:1500]])
    assert _full(arrow) == _full(dicts)
    refused = {r["source"] for r in _rejected(arrow)}
    assert refused == {f"file:day{k}.parquet" for k in range(3)}
    pq.write_table(pa.Table.from_pylist([{**r, "extra": 1} for r in days[1]]), paths[1], row_group_size=200)
    chunks = list(file_lines.merged_chunks(paths))  # another schema: dicts, same order
    assert all(isinstance(records, list) for _, records, _ in chunks)
    assert [r["ingest_ts"] for _, records, _ in chunks for r in records] == [g[1]["ingest_ts"] for g in got]
