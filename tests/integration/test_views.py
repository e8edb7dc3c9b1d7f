"""The views of migration 003 against the queries they replace, on a real replay.

Two days of simulator output for 24 symbols are replayed through the real flow into the real
engine: day 1 served by the baseline, then a model trained on day 1 and promoted, then day 2
from the last hour of day 1 on (that hour's labels a second time, its candles predicted by
both versions). Merges are
then stopped and some rows written again with other values, so unmerged duplicates exist and
FINAL matters. Each view must equal (a) the hand-written query the runbook used to give, and
(b) a re-computation in pandas from the tables read with FINAL.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from dataflows.simulator import SimConfig, write_files
from tickcast.app.backfill import run_replay
from tickcast.lifecycle import train_job
from tickcast.settings import load_settings
from tickcast.store import Store

START = 1_763_683_200_000
DAY = 86_400_000
HOUR = 3_600_000
KEY = ["symbol", "interval", "horizon", "close_time"]
_counter = itertools.count()

# The runbook's hand-written queries before the views (docs/runbook.md §11, issue 20).
HAND_JOIN = """
SELECT p.symbol AS symbol, p.interval AS interval, p.horizon AS horizon, p.close_time AS close_time,
       p.model_version AS model_version, p.prob AS prob, l.label AS label
FROM (SELECT symbol, interval, horizon, close_time, model_version, prob FROM {db}.predictions FINAL) AS p
INNER JOIN (SELECT symbol, interval, horizon, close_time, label FROM {db}.labels FINAL) AS l
USING (symbol, interval, horizon, close_time)
"""
HAND_JOIN_WITHOUT_FINAL = """
SELECT count()
FROM (SELECT symbol, interval, horizon, close_time, model_version, prob FROM {db}.predictions) AS p
INNER JOIN (SELECT symbol, interval, horizon, close_time, label FROM {db}.labels) AS l
USING (symbol, interval, horizon, close_time)
"""
HAND_DAILY = """
SELECT toDate(p.close_time) AS day, p.model_version AS model_version, count() AS n,
       round(avg((p.prob >= 0.5) = (l.label = 1)), 4) AS accuracy
FROM (SELECT symbol, interval, horizon, close_time, model_version, prob FROM {db}.predictions FINAL) AS p
INNER JOIN (SELECT symbol, interval, horizon, close_time, label FROM {db}.labels FINAL) AS l
USING (symbol, interval, horizon, close_time)
GROUP BY day, p.model_version ORDER BY day DESC, p.model_version
"""
HAND_TIMELINE = """
SELECT window_end, model_version, n, round(ece, 4) AS ece, round(ece_prod, 4) AS ece_prod,
       round(delta_ece, 4) AS d_ece, round(delta_ece_ema, 4) AS d_ema, abs_streak, rel_streak,
       drift_on, state, recommendation, cooldown_remaining_s
FROM {db}.calibration_windows FINAL
WHERE scope = 'overall'
ORDER BY window_end DESC, model_version
"""


@dataclass
class Replayed:
    store: Store
    version: str  # the model trained on day 1
    relabeled: dict[tuple, int]  # key -> the label written the second time
    reprobed: dict[tuple, float]  # key -> the model's prob written the second time


@pytest.fixture(scope="module")
def replayed(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    tmp = tmp_path_factory.mktemp("views")
    store = Store(f"chdb://{chdb_dir}", database=f"views{os.getpid()}_{next(_counter)}")
    store.migrate()
    settings = load_settings(
        MODEL_STORE_DIR=str(tmp / "models"), AUTO_PROMOTE_ENABLED=True, PROMOTION_COOLDOWN_SECONDS=0
    )
    write_files(SimConfig(symbols=24, hours=48, seed=5, start_ms=START), tmp / "sim")
    days = [tmp / "day1", tmp / "day2"]
    for day in days:
        day.mkdir()
    for name in ("ticks.jsonl", "candles.jsonl"):
        with (tmp / "sim" / name).open() as src, (days[0] / name).open("w") as d1, (days[1] / name).open("w") as d2:
            for line in src:
                ingest = orjson.loads(line)["ingest_ts"]
                if ingest < START + DAY:
                    d1.write(line)
                if ingest >= START + DAY - HOUR:
                    d2.write(line)
    run_replay(settings, inputs=[days[0]], store=store, progress=False)
    trained = train_job(settings, store)({"promote": True}, lambda f, m: None)
    assert trained["passed"] and trained["promoted"], trained
    # day 2 served by the model, from the last hour of day 1 on (as a restart from an older
    # snapshot would): that hour's labels are written twice, its candles predicted by both
    run_replay(settings, inputs=[days[1]], store=store, progress=False)
    for table in ("predictions", "labels", "calibration_windows"):
        store.command(f"SYSTEM STOP MERGES {{db}}.{table}")
    relabeled, reprobed = _write_second_versions(store, trained["version"])
    yield Replayed(store, trained["version"], relabeled, reprobed)
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


def _write_second_versions(store: Store, version: str) -> tuple[dict[tuple, int], dict[tuple, float]]:
    """Rows written again under the same keys with other values (what a replay after a fix, or
    the labeler with force, does): FINAL shows the newer ones, a read without FINAL both."""
    labels = store.rows(
        "SELECT symbol, interval, toUnixTimestamp64Milli(close_time) AS close_time, horizon, label, close_t, close_th "
        "FROM {db}.labels FINAL WHERE symbol IN ('BTCUSDT', 'ETHUSDT') ORDER BY close_time LIMIT 300"
    )
    labels = [{**r, "label": 1 - r["label"]} for r in labels]
    store.insert_rows("labels", labels)
    preds = store.rows(
        "SELECT symbol, interval, toUnixTimestamp64Milli(close_time) AS close_time, horizon, model_version, prob, "
        "fallback_reason, latency_ms FROM {db}.predictions FINAL WHERE model_version = {v:String} "
        "ORDER BY close_time, symbol LIMIT 500",
        {"v": version},
    )
    preds = [{**r, "prob": 1.0 - r["prob"]} for r in preds]
    store.insert_rows("predictions", preds)

    def key(r: dict) -> tuple:
        return (r["symbol"], r["interval"], r["horizon"], r["close_time"])

    return {key(r): r["label"] for r in labels}, {key(r): r["prob"] for r in preds}


def _df(store: Store, sql: str, params: dict | None = None) -> pd.DataFrame:
    return store.df(sql, params).reset_index(drop=True)


def _pandas_labeled(store: Store) -> pd.DataFrame:
    preds = _df(store, "SELECT * FROM {db}.predictions FINAL")
    labels = _df(store, "SELECT * FROM {db}.labels FINAL")
    joined = preds.merge(labels, on=KEY, how="inner", validate="many_to_one")
    joined["correct"] = ((joined["prob"] >= 0.5) == (joined["label"] == 1)).astype("uint8")
    return joined


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by).reset_index(drop=True)


def test_the_data_has_two_versions_days_and_unmerged_duplicates(replayed: Replayed) -> None:
    store, version = replayed.store, replayed.version
    versions = {r["model_version"] for r in store.rows("SELECT DISTINCT model_version FROM {db}.predictions")}
    assert {"baseline", version} <= versions
    raw = store.scalar("SELECT count() FROM {db}.labels")
    assert raw > store.count("labels")  # FINAL matters for these reads
    assert store.count("labels") > 24 * 2 * 1400


def test_labeled_predictions_equal_the_join_in_pandas(replayed: Replayed) -> None:
    store = replayed.store
    cols = [*KEY, "model_version", "prob", "label", "correct", "fallback_reason", "latency_ms", "close_t", "close_th"]
    view = _sorted(_df(store, "SELECT * FROM {db}.labeled_predictions")[cols], [*KEY, "model_version"])
    oracle = _sorted(_pandas_labeled(store)[cols], [*KEY, "model_version"])
    pd.testing.assert_frame_equal(view, oracle, check_dtype=False, check_exact=True)


def test_labeled_predictions_equal_the_hand_written_join_and_not_a_join_without_final(replayed: Replayed) -> None:
    store = replayed.store
    cols = [*KEY, "model_version", "prob", "label"]
    view = _sorted(_df(store, "SELECT * FROM {db}.labeled_predictions")[cols], [*KEY, "model_version"])
    hand = _sorted(_df(store, HAND_JOIN)[cols], [*KEY, "model_version"])
    pd.testing.assert_frame_equal(view, hand, check_dtype=False, check_exact=True)
    assert store.scalar(HAND_JOIN_WITHOUT_FINAL) > len(view)  # the same join without FINAL counts duplicates


def test_rows_written_twice_show_their_second_values(replayed: Replayed) -> None:
    store, version = replayed.store, replayed.version
    rows = store.rows(
        "SELECT symbol, interval, horizon, toUnixTimestamp64Milli(close_time) AS close_time, model_version, prob, label "
        "FROM {db}.labeled_predictions WHERE symbol IN ('BTCUSDT', 'ETHUSDT')"
    )
    labels = {(r["symbol"], r["interval"], r["horizon"], r["close_time"]): r["label"] for r in rows}
    probs = {
        (r["symbol"], r["interval"], r["horizon"], r["close_time"]): r["prob"]
        for r in rows
        if r["model_version"] == version
    }
    assert all(labels[k] == v for k, v in replayed.relabeled.items() if k in labels)
    assert sum(k in labels for k in replayed.relabeled) > 250  # (the last candles of a day may be unlabeled)
    checked = [k for k in replayed.reprobed if k in probs]
    assert checked and all(probs[k] == replayed.reprobed[k] for k in checked)


def test_daily_accuracy_equals_pandas_and_the_runbook_query(replayed: Replayed) -> None:
    store, version = replayed.store, replayed.version
    view = _sorted(_df(store, "SELECT * FROM {db}.daily_accuracy"), ["day", "model_version"])
    joined = _pandas_labeled(store)
    joined["day"] = joined["close_time"].dt.tz_convert("UTC").dt.date
    joined["sq"] = (joined["prob"] - joined["label"]) ** 2
    oracle = (
        joined.groupby(["day", "model_version"])
        .agg(
            n=("prob", "size"),
            accuracy=("correct", "mean"),
            mean_prob=("prob", "mean"),
            up_rate=("label", "mean"),
            brier=("sq", "mean"),
        )
        .reset_index()
    )
    oracle = _sorted(oracle, ["day", "model_version"])
    assert list(view["day"]) == list(oracle["day"]) and list(view["model_version"]) == list(oracle["model_version"])
    assert list(view["n"]) == list(oracle["n"])
    for col in ("accuracy", "mean_prob", "up_rate", "brier"):
        np.testing.assert_allclose(view[col].to_numpy(float), oracle[col].to_numpy(float), rtol=1e-12, err_msg=col)
    assert {"baseline", version} <= set(view["model_version"]) and len(set(view["day"])) == 2
    hand = _sorted(_df(store, HAND_DAILY), ["day", "model_version"])
    assert list(hand["n"]) == list(view["n"])
    np.testing.assert_allclose(hand["accuracy"].to_numpy(float), view["accuracy"].round(4).to_numpy(float), atol=1e-9)


def test_latest_predictions_pick_the_newest_candle_and_a_model_over_the_baseline(replayed: Replayed) -> None:
    store, version = replayed.store, replayed.version
    newest = store.rows(
        "SELECT symbol, interval, horizon, toUnixTimestamp64Milli(max(close_time)) AS t FROM {db}.predictions FINAL "
        "WHERE symbol IN ('BTCUSDT', 'ETHUSDT') GROUP BY symbol, interval, horizon ORDER BY symbol"
    )
    btc, eth = newest
    # the same newest candle also predicted by the baseline (BTC) and by a newer-named version (ETH)
    extra = [
        {
            **btc,
            "close_time": btc["t"],
            "model_version": "baseline",
            "prob": 0.01,
            "fallback_reason": "x",
            "latency_ms": 1.0,
        },
        {
            **eth,
            "close_time": eth["t"],
            "model_version": "zz-newer",
            "prob": 0.99,
            "fallback_reason": "",
            "latency_ms": 1.0,
        },
    ]
    # (the newest candles have no label yet: these rows change no other view)
    store.insert_rows("predictions", [{k: v for k, v in r.items() if k != "t"} for r in extra])
    view = _sorted(_df(store, "SELECT * FROM {db}.latest_predictions"), ["symbol", "interval", "horizon"])
    preds = _df(store, "SELECT * FROM {db}.predictions FINAL")
    preds["is_baseline"] = preds["model_version"] == "baseline"
    oracle = (
        preds.sort_values(
            ["symbol", "interval", "horizon", "close_time", "is_baseline", "model_version"],
            ascending=[True, True, True, False, True, False],
        )
        .groupby(["symbol", "interval", "horizon"], as_index=False)
        .head(1)
    )
    cols = [*KEY, "model_version", "prob", "fallback_reason", "latency_ms"]
    pd.testing.assert_frame_equal(
        view[cols], _sorted(oracle[cols], ["symbol", "interval", "horizon"]), check_dtype=False, check_exact=True
    )
    assert len(view) == 24
    by_symbol = view.set_index("symbol")
    assert by_symbol.loc["BTCUSDT", "model_version"] == version
    assert by_symbol.loc["ETHUSDT", "model_version"] == "zz-newer"


def test_calibration_timeline_equals_the_overall_windows(replayed: Replayed) -> None:
    store, version = replayed.store, replayed.version
    view = _df(store, "SELECT * FROM {db}.calibration_timeline")
    windows = _df(store, "SELECT * FROM {db}.calibration_windows FINAL")
    oracle = windows[windows["scope"] == "overall"][list(view.columns)]
    keys = ["model_version", "window_end"]
    pd.testing.assert_frame_equal(_sorted(view, keys), _sorted(oracle, keys), check_dtype=False, check_exact=True)
    per_version = view["model_version"].value_counts()
    assert per_version[version] > 250 and per_version["baseline"] > 250  # a day each of 5-minute evaluations
    hand = _df(store, HAND_TIMELINE)
    assert len(hand) == len(view)
    np.testing.assert_allclose(
        _sorted(hand, keys)["ece"].to_numpy(float), _sorted(view, keys)["ece"].round(4).to_numpy(float), atol=1e-9
    )


def _runbook_sql(path: Path) -> list[str]:
    """The statements of the ```sql blocks of a runbook's section 11."""
    text = path.read_text(encoding="utf-8")
    section = text[text.index("\n## 11.") : text.index("\n## 12.")]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    statements = []
    for block in blocks:
        body = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
        statements += [s.strip() for s in body.split(";") if s.strip()]
    return statements


@pytest.mark.parametrize("runbook", ["docs/runbook.md", "docs/ko/runbook.md"])
def test_the_runbooks_sql_runs_on_the_sql_interface(replayed: Replayed, chdb_dir: Path, runbook: str) -> None:
    from api.clickhouse_http.engine import ReadOnlyEngine
    from api.clickhouse_http.request import SqlRequest
    from api.clickhouse_http.settings_policy import Limits

    store = replayed.store
    engine = ReadOnlyEngine(str(chdb_dir), limits=Limits(30, 2**30, 10**7, 2**29, 1), database=store.database)
    statements = _runbook_sql(Path(__file__).resolve().parents[2] / runbook)
    assert len(statements) == 16  # every example of the section (update with the runbooks)
    for sql in statements:
        result = engine.run(SqlRequest(sql.replace("tickcast.", f"{store.database}."), default_format="TSV"))
        if any(view in sql for view in ("latest_predictions", "calibration_timeline", "daily_accuracy")):
            assert result.body.count(b"\n") >= 3, sql  # (the time-relative examples may be empty here)
