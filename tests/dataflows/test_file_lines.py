"""File replays read in bounded chunks give the records, and the order, of reading the whole
file and sorting it: the oracle below is the previous reader (orjson per line, a stable sort
by ingest key, heapq.merge across files)."""

from __future__ import annotations

import heapq
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import file_lines
from dataflows.line_block import Lines
from dataflows.sources import FileReplaySource, merged_file_records
from tests.dataflows.partitions import drain


def _oracle_key(obj: object) -> int:
    if isinstance(obj, dict):
        for key in ("ingest_ts", "ts", "close_time"):
            value = obj.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return min(max(int(value), -(2**63)), 2**63 - 1)  # keys are int64
    return 0


def _oracle_file(path: Path) -> list[tuple[int, object]]:
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        items = [(_oracle_key(r), r) for r in rows]
    else:
        items = []
        for line in path.read_bytes().split(b"\n"):
            line = line.strip()
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            items.append((_oracle_key(obj), line))
    items.sort(key=lambda kv: kv[0])  # stable: what is in order stays
    return items


def _oracle(paths: list[Path]) -> list[tuple[str, object]]:
    streams = [[(k, i, s, p) for s, (k, p) in enumerate(_oracle_file(path))] for i, path in enumerate(paths)]
    return [(f"file:{paths[i].name}", p) for _k, i, _s, p in heapq.merge(*streams)]


KEY_VALUES = st.one_of(
    st.integers(-(10**18), 10**18),
    st.integers(0, 50),  # ties
    st.floats(-1e15, 1e15, allow_nan=False),
    st.sampled_from([None, True, "12", [], {}, {"ts": 3}, 10**20, 1.0]),
)
MEMBERS = st.dictionaries(
    st.sampled_from(["ingest_ts", "ts", "close_time", "score", "meta", "x"]), KEY_VALUES, max_size=4
)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()  # ints past 64 bits too


def _spell(obj: dict, how: int) -> bytes:
    raw = _dumps(obj)
    if how == 1:
        return raw.replace(b":", b" : ").replace(b",", b" ,\t")
    if how == 2:
        return raw.replace(b'"ts"', b'"\\u0074s"')  # an escaped member name
    if how == 3:
        return b"  " + raw + b" \r"
    return raw


LINES = st.one_of(
    st.builds(_spell, MEMBERS, st.integers(0, 3)),
    st.sampled_from([b"", b"   ", b"not json", b"[1, 2]", b'{"ts": 5', b"null", b'{"ts": 07}', b'{"ts": 5}{"ts": 1}']),
    st.builds(lambda a, b: _dumps({"ts": a, "ts2": b}).replace(b"ts2", b"ts"), st.integers(0, 99), KEY_VALUES),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(LINES, max_size=40), min_size=1, max_size=3), st.sampled_from([16, 64, 1 << 20]))
def test_chunked_reading_gives_the_whole_file_order(files: list[list[bytes]], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_files(Path(tmp), files, chunk)


def _check_files(tmp_path: Path, files: list[list[bytes]], chunk: int) -> None:
    paths = []
    for i, lines in enumerate(files):
        path = tmp_path / f"f{i}-{len(files)}-{chunk}.jsonl"
        path.write_bytes(b"\n".join(lines))
        paths.append(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(file_lines, "CHUNK_BYTES", chunk)
        got = list(merged_file_records(paths))
    assert [(n, p) for n, p, _ in got] == _oracle(paths)


def test_merged_jsonl_files_reach_the_decoder_as_one_block_of_lines(tmp_path: Path, monkeypatch) -> None:
    """A folder (the simulator's ticks.jsonl and candles.jsonl, a file a day) is merged into
    `Lines` over one block, as one file is read: not one `bytes` per line (the per-line list
    cost a folder replay ~0.5 µs a line)."""
    rng = np.random.default_rng(5)
    for name, lag in (("ticks.jsonl", 5), ("candles.jsonl", 7), ("day2.jsonl", 3)):
        times = np.sort(rng.integers(0, 10**6, 2000))
        (tmp_path / name).write_bytes(
            b"\n".join(orjson.dumps({"ts": int(t), "ingest_ts": int(t) + lag}) for t in times)
        )
    monkeypatch.setattr(file_lines, "CHUNK_BYTES", 4096)
    paths = sorted(tmp_path.glob("*.jsonl"))
    chunks = list(file_lines.merged_chunks(paths))
    assert len(chunks) > 3 and all(isinstance(records, Lines) for _, records, _ in chunks)
    got = [(f"file:{paths[f].name}", line) for _, records, files in chunks for line, f in zip(records, files.tolist())]
    assert got == _oracle(paths)
    blocks = drain(FileReplaySource(paths, batch_size=1500).build_part("s", "files", None))
    assert all(isinstance(b.values, Lines) for b in blocks)
    assert [r[:2] for b in blocks for r in b] == got


def test_sorted_and_unsorted_files_and_parquet_merge_like_the_oracle(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    ticks = [
        {"symbol": "BTCUSDT", "ts": int(t), "score": 0.1, "ingest_ts": int(t) + 5}
        for t in np.sort(rng.integers(0, 10**6, 3000))
    ]
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(orjson.dumps(t) for t in ticks))
    shuffled = [ticks[k] for k in rng.permutation(len(ticks))]
    (tmp_path / "b.jsonl").write_bytes(b"\n".join(orjson.dumps(t) for t in shuffled))
    candles = [
        {"symbol": "BTCUSDT", "close_time": int(t), "ingest_ts": int(t) + (7 if k % 3 else 5)}
        for k, t in enumerate(range(0, 10**6, 997))
    ]
    pq.write_table(pa.Table.from_pylist(candles), tmp_path / "c.parquet", row_group_size=100)
    monkeypatch.setattr(file_lines, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(file_lines, "PARQUET_BATCH_ROWS", 128)
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.parquet"]
    got = [(n, p) for n, p, _ in merged_file_records(paths)]
    assert got == _oracle(paths)
    # the source emits the same records in RawBlocks of the batch size, and resumes part-way
    part = FileReplaySource(paths, batch_size=1000).build_part("s", "files", None)
    blocks = drain(part)
    assert [len(b) for b in blocks[:-1]] == [1000] * (len(blocks) - 1)
    assert [r[:2] for b in blocks for r in b] == got
    resumed = FileReplaySource(paths, batch_size=1000).build_part("s", "files", 2500)
    assert [r[:2] for r in resumed.next_batch()[0][1]] == got[2500:3500]


def test_parquet_time_columns_holding_nan_inf_or_huge_values_order_and_do_not_stop_the_read(tmp_path: Path) -> None:
    """A Parquet float time column can hold NaN and ±inf, an unsigned one values past int64;
    JSON cannot. Such a value is not a time: the ordering key falls back to the next time
    field (or sorts first), and the record goes on to decode, which rejects it with a reason
    (tests/integration/test_signals_flow.py). Before, int(nan) raised out of the file source
    and stopped the replay."""
    path = tmp_path / "odd.parquet"
    big = 2**64 - 1
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "ts": pa.array([1_000.0, float("nan"), 3_000.0, float("-inf"), 5_000.0]),
            "ingest_ts": pa.array([1_500.0, 2_500.0, float("nan"), None, float("inf")]),
            "close_time": pa.array([0, 0, 0, big, 0], pa.uint64()),
        }
    )
    pq.write_table(table, path)
    assert file_lines.effective_ingest({"ingest_ts": float("nan"), "ts": 7.0}) == 7
    assert file_lines.effective_ingest({"ingest_ts": float("inf"), "ts": float("nan"), "close_time": big}) == 2**63 - 1
    assert file_lines.effective_ingest({"ts": float("-inf")}) == 0
    chunks = list(file_lines.file_chunks(path))
    keys = np.concatenate([c.keys for c in chunks]).tolist()
    ids = [r["id"] for c in chunks for r in c.records]
    # keys: a 1500, b 2500, c 3000 (ts), d close_time clamped, e inf -> ts 5000; read in key order
    assert sorted(zip(keys, ids)) == [(1_500, "a"), (2_500, "b"), (3_000, "c"), (5_000, "e"), (2**63 - 1, "d")]
    assert ids == ["a", "b", "c", "e", "d"]


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["ingest_ts", "ts", "close_time", "other"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
        ),
    )
)
def test_the_ordering_key_of_any_record_is_an_int64_and_never_raises(record: dict) -> None:
    key = file_lines.effective_ingest(record)
    assert isinstance(key, int) and -(2**63) <= key <= 2**63 - 1
    np.array([key], np.int64)  # what the chunk's key array holds


def test_the_first_pass_runs_beside_and_gives_the_count_and_the_order(tmp_path: Path, monkeypatch) -> None:
    """`FileReplaySource` starts each JSONL file's first pass (`file_lines.survey`) when it is
    made; the progress total and the reader's order check both come from it."""
    rng = np.random.default_rng(5)
    ticks = [{"symbol": "X", "ts": int(t), "ingest_ts": int(t) + 1} for t in np.sort(rng.integers(0, 10**6, 500))]
    lines = [orjson.dumps(t) for t in ticks]
    (tmp_path / "sorted.jsonl").write_bytes(b"\n".join(lines) + b"\n\n  \n")
    (tmp_path / "shuffled.jsonl").write_bytes(b"\n".join(lines[k] for k in rng.permutation(len(lines))))
    monkeypatch.setattr(file_lines, "CHUNK_BYTES", 1024)
    passes: list[Path] = []
    survey_now = file_lines._survey_now
    monkeypatch.setattr(file_lines, "_survey_now", lambda path: passes.append(path) or survey_now(path))
    for name in ("sorted.jsonl", "shuffled.jsonl"):
        path = tmp_path / name
        source = FileReplaySource([path], batch_size=64)
        assert source.count_records() == 500
        got = [r[:2] for b in drain(source.build_part("s", "files", None)) for r in b]
        assert got == _oracle([path])
        assert passes.count(path) == 1  # one first pass for the count and the order


def _oracle_survey(path: Path) -> tuple[bool, int]:
    keys = []
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            try:
                keys.append(_oracle_key(orjson.loads(line)))
            except orjson.JSONDecodeError:
                keys.append(0)
    return all(a <= b for a, b in zip(keys, keys[1:])), len(keys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.integers(-5, 40), min_size=0, max_size=60),
    swap=st.one_of(st.none(), st.tuples(st.integers(0, 59), st.integers(0, 59))),
    blanks=st.lists(st.integers(0, 60), max_size=4),
    split=st.integers(1, 2000),
    chunk=st.sampled_from([64, 128, 1 << 20]),
)
def test_a_large_file_surveyed_in_two_halves_gives_what_one_pass_gives(
    tmp_path: Path, monkeypatch, keys, swap, blanks, split, chunk
) -> None:
    """Above `SPLIT_BYTES` the first pass runs on two threads, one half of the file each; the
    order it reports and its count are the whole file's (the oracle: orjson on every line),
    wherever the middle falls: within a half, at the seam, among blank lines."""
    keys = sorted(keys)
    if swap is not None and keys:  # one disorder somewhere (or none, when a == b or keys tie)
        a, b = (i % len(keys) for i in swap)
        keys[a], keys[b] = keys[b], keys[a]
    lines = [orjson.dumps({"symbol": "X", "ts": k, "ingest_ts": k, "pad": "x" * (k % 7)}) for k in keys]
    for at in sorted(blanks, reverse=True):
        lines.insert(min(at, len(lines)), b"   ")
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(file_lines, "SPLIT_BYTES", split)
    monkeypatch.setattr(file_lines, "CHUNK_BYTES", chunk)
    got = file_lines._survey_now(path)
    assert (got.in_order, got.records) == _oracle_survey(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_keys_at_the_int64_extremes_are_not_taken_for_in_order(tmp_path: Path, suffix: str) -> None:
    """A key clamped to the int64 maximum followed by a negative one is a step down; a
    difference of the two wraps around to a step up (what `np.diff` said before)."""
    records = [{"ts": 2**63 - 1, "i": 0}, {"ts": -2, "i": 1}, {"ts": 0, "i": 2}]
    path = tmp_path / f"extremes{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in records))
    got = [orjson.loads(p)["i"] if isinstance(p, bytes) else p["i"] for _, p, _ in merged_file_records([path])]
    assert got == [1, 2, 0]


def test_a_relative_input_path_is_read_whatever_the_working_directory_becomes(tmp_path: Path, monkeypatch) -> None:
    """The first pass reads on a thread of its own while the replay starts chdb, whose start-up
    moves the process's working directory for a moment: a relative input path names the file
    it named when the replay was started."""
    (tmp_path / "ticks.jsonl").write_bytes(b'{"ts": 1, "ingest_ts": 2}\n{"ts": 3, "ingest_ts": 4}\n')
    monkeypatch.chdir(tmp_path)
    source = FileReplaySource(["ticks.jsonl"], batch_size=8)
    monkeypatch.chdir("/")
    assert source.count_records() == 2
    assert len([r for b in drain(source.build_part("s", "files", None)) for r in b]) == 2


def test_importing_the_module_leaves_the_tick_decoder_to_the_flow() -> None:
    """A replay's survey starts as soon as file_lines is imported: the tick decoder's modules
    (arrow_ticks, tick_decode, ~0.13 s) are imported later, by the flow, or by a Parquet read;
    and the survey's kernel sets Numba up without its BLAS probe (scipy) all the same."""
    code = (
        "import sys, numpy as np, dataflows.file_lines as fl\n"
        "fl._jsonl_index(np.frombuffer(b'{\"ts\": 1}\\n', np.uint8).copy())\n"  # the survey's kernel runs
        "print(sorted(m for m in sys.modules if m.startswith(('dataflows.', 'scipy.'))))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = done.stdout.strip().splitlines()[-1]
    assert "dataflows.arrow_ticks" not in loaded and "dataflows.tick_decode" not in loaded, loaded
    assert "scipy.linalg" not in loaded, loaded  # Numba's BLAS probe skipped (dataflows/kernels/numba_target.py)
