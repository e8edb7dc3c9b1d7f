"""A Parquet replay stores what a JSONL replay of the same records stores, row for row.

The Parquet ticks take the columnar Arrow path (dataflows/arrow_ticks.py): the simulator's
nested `meta` arrives as a struct column (as `pa.Table.from_pylist` writes it, and the
bench) or as a JSON string column; either way the stored `meta` text must be the JSONL
path's. Rows the columnar checks leave (malformed, out of range, NaN) are rejected with the
same reasons."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflows.arrow_ticks import columnar
from dataflows.simulator import SimConfig, write_files
from tickcast.app.backfill import run_replay
from tickcast.settings import load_settings
from tickcast.store import Store

START = 1_763_683_200_000
COMPARED = ("sentiment_ticks", "sentiment_bars", "features")
NUMERIC = ("ts", "score", "polarity", "ingest_ts")


def _tables(store: Store) -> dict[str, pd.DataFrame]:
    out = {}
    for table in COMPARED:
        df = store.df("SELECT * FROM {db}." + table + " FINAL")
        out[table] = df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)
    reasons = store.df("SELECT reason FROM {db}.rejected_records FINAL")["reason"]
    out["rejected_reasons"] = reasons.value_counts().sort_index().to_frame()
    return out


@pytest.mark.parametrize(("meta", "files"), [("struct", 1), ("json string", 1), ("struct", 3)])
def test_a_parquet_replay_stores_the_jsonl_replays_rows(
    store: Store, tmp_path: Path, chdb_dir: Path, meta: str, files: int
) -> None:
    """`files` 3: a folder of daily exports (one schema), merged as Arrow columns."""
    cfg = SimConfig(
        symbols=3, hours=3.0, seed=11, start_ms=START, malformed_rate=0.03, duplicate_rate=0.02, late_rate=0.01
    )
    write_files(cfg, tmp_path / "sim")
    lines = (tmp_path / "sim" / "ticks.jsonl").read_bytes().splitlines()
    # the records a Parquet column can hold as they are (a string where a number belongs cannot)
    records = [r for r in map(orjson.loads, lines) if not any(isinstance(r.get(k), str) for k in NUMERIC)]
    # A Parquet row has every column: a tick whose score was dropped ("missing_field") has a null
    # score there, a tick missing its score; in JSON without the member it is of no known kind.
    records = [r if "score" in r else {**r, "score": None} for r in records]
    assert len(records) > 0.9 * len(lines)
    (tmp_path / "ticks.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    rows = records if meta == "struct" else [{**r, "meta": orjson.dumps(r["meta"]).decode()} for r in records]
    table = pa.Table.from_pylist(rows)
    assert pa.types.is_struct(table.schema.field("meta").type) == (meta == "struct")
    assert columnar(table.schema)  # the replay reads it column-wise
    if files == 1:
        parquet = tmp_path / "ticks.parquet"
        pq.write_table(table, parquet, row_group_size=5_000)
    else:
        parquet = tmp_path / "days"
        parquet.mkdir()
        cuts = [table.num_rows * k // files for k in range(files + 1)]
        for k in range(files):
            pq.write_table(table.slice(cuts[k], cuts[k + 1] - cuts[k]), parquet / f"day{k}.parquet", row_group_size=900)

    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"))
    run_replay(settings, inputs=[parquet], store=store, progress=False, with_model=False)
    jsonl = Store(f"chdb://{chdb_dir}", database=store.database + "_jsonl")
    jsonl.migrate()
    try:
        run_replay(settings, inputs=[tmp_path / "ticks.jsonl"], store=jsonl, progress=False, with_model=False)
        got, want = _tables(store), _tables(jsonl)
    finally:
        jsonl.command(f"DROP DATABASE IF EXISTS {jsonl.database}")
    assert len(want["sentiment_ticks"]) > 1_000 and want["sentiment_ticks"]["meta"].str.contains("lang").all()
    assert want["rejected_reasons"]["count"].sum() > 20  # malformed, duplicate and late ticks
    for name, df in want.items():
        pd.testing.assert_frame_equal(got[name], df, check_exact=True, obj=name)
