"""The signals dataflow end to end on the real ClickHouse engine (chdb), without Kafka."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from bytewax.testing import run_main

from dataflows.items import ShardWork
from dataflows.signals import FlowOptions, build_flow
from dataflows.simulator import SimConfig, generate_labeled
from dataflows.sources import RecordsSource
from tickcast.app.backfill import stored_records
from tickcast.features import MARKET_FEATURES, SENTIMENT_FEATURES
from tickcast.settings import load_settings
from tickcast.store import Store

START = 1_763_683_200_000


def run_records(store: Store, records: list[Any], tmp_path: Path, *, with_model: bool = False, **env: Any) -> None:
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"), **env)
    flow = build_flow(
        settings,
        [RecordsSource(records, batch_size=257)],
        store_factory=lambda: store,
        options=FlowOptions(live=False, with_model=with_model, publish_events=False),
    )
    run_main(flow)


def sim(**kw: Any) -> list[tuple[dict[str, Any], str | None]]:
    cfg = SimConfig(**{"symbols": 3, "hours": 2.0, "seed": 7, "start_ms": START, **kw})
    return list(generate_labeled(cfg))


def test_every_good_record_once_and_every_bad_one_rejected_with_reason(store: Store, tmp_path: Path) -> None:
    labeled = sim(malformed_rate=0.02, duplicate_rate=0.03, late_rate=0.02)
    records = [r for r, _ in labeled]
    good_ticks = [r for r, bad in labeled if bad is None and "score" in r]
    late = [t for t in good_ticks if t["ingest_ts"] - t["ts"] > 600_000]
    accepted_ids = {t["id"] for t in good_ticks if t not in late}
    duplicates = len([t for t in good_ticks if t not in late]) - len(accepted_ids)
    good_candles = [r for r, bad in labeled if bad is None and "open_time" in r]
    malformed = [r for r, bad in labeled if bad is not None]
    assert late and duplicates > 0 and malformed  # the knobs really produced faults

    run_records(store, records, tmp_path)

    stored_ids = {r["id"] for r in store.rows("SELECT id FROM {db}.sentiment_ticks FINAL")}
    assert stored_ids == accepted_ids
    assert store.count("sentiment_ticks") == len(accepted_ids)
    assert store.count("candles") == len(good_candles)
    reasons = pd.DataFrame(store.rows("SELECT reason FROM {db}.rejected_records FINAL"))["reason"]
    assert reasons.str.startswith("late tick").sum() == len(late)
    assert reasons.str.startswith("duplicate tick id").sum() == duplicates
    assert len(reasons) == len(late) + duplicates + len(malformed)
    assert reasons.str.contains("score").any() and reasons.str.contains("unknown interval").any()

    before = {
        t: store.count(t) for t in ("sentiment_ticks", "candles", "rejected_records", "sentiment_bars", "features")
    }
    run_records(store, records, tmp_path)  # the same replay again adds nothing
    assert {t: store.count(t) for t in before} == before


def _features(store: Store) -> pd.DataFrame:
    cols = ", ".join(
        ("symbol", "toUnixTimestamp64Milli(close_time) AS t", *MARKET_FEATURES, *SENTIMENT_FEATURES, "join_status")
    )
    return store.df(f"SELECT {cols} FROM {{db}}.features FINAL ORDER BY symbol, t").reset_index(drop=True)


def test_replay_from_stored_rows_reproduces_bars_features_predictions(
    store: Store, tmp_path: Path, chdb_dir: Path
) -> None:
    records = [r for r, _ in sim(duplicate_rate=0.02, late_rate=0.01)]
    run_records(store, records, tmp_path, with_model=True)
    live_features = _features(store)
    live_bars = store.df("SELECT * FROM {db}.sentiment_bars FINAL ORDER BY symbol, bar_end")
    live_preds = store.df(
        "SELECT symbol, close_time, model_version, prob, fallback_reason "
        "FROM {db}.predictions FINAL ORDER BY symbol, close_time"
    )
    assert len(live_features) > 300 and (live_features["join_status"] == "ok").mean() > 0.9

    replayed = Store(f"chdb://{chdb_dir}", database=store.database + "_replay")
    replayed.migrate()
    try:
        run_records(replayed, stored_records(store), tmp_path, with_model=True)
        pd.testing.assert_frame_equal(_features(replayed), live_features, check_exact=True)
        pd.testing.assert_frame_equal(
            replayed.df("SELECT * FROM {db}.sentiment_bars FINAL ORDER BY symbol, bar_end"), live_bars, check_exact=True
        )
        pd.testing.assert_frame_equal(
            replayed.df(
                "SELECT symbol, close_time, model_version, prob, fallback_reason "
                "FROM {db}.predictions FINAL ORDER BY symbol, close_time"
            ),
            live_preds,
            check_exact=True,
        )
    finally:
        replayed.command(f"DROP DATABASE IF EXISTS {replayed.database}")


def test_poison_ticks_never_change_a_candles_features(store: Store, tmp_path: Path, chdb_dir: Path) -> None:
    records = [r for r, _ in sim(symbols=1, hours=1.0)]
    candles = [r for r in records if "open_time" in r]
    target = candles[40]
    T = target["close_time"]
    poison = [
        # ts >= T: the future
        {"symbol": target["symbol"], "ts": T, "score": 1.0, "provider": "newsapi", "id": "p1", "ingest_ts": T + 100},
        {
            "symbol": target["symbol"],
            "ts": T + 500,
            "score": 1.0,
            "provider": "newsapi",
            "id": "p2",
            "ingest_ts": T + 600,
        },
        # ts < T but ingested after T + grace
        {
            "symbol": target["symbol"],
            "ts": T - 30_000,
            "score": -1.0,
            "provider": "newsapi",
            "id": "p3",
            "ingest_ts": T + 2_001,
        },
    ]
    clean_db = store
    run_records(clean_db, records, tmp_path)
    poisoned = Store(f"chdb://{chdb_dir}", database=store.database + "_poison")
    poisoned.migrate()
    try:
        mixed = sorted(records + poison, key=lambda r: r["ingest_ts"])
        run_records(poisoned, mixed, tmp_path)
        assert poisoned.count("sentiment_ticks") == clean_db.count("sentiment_ticks") + 3
        a, b = _features(clean_db), _features(poisoned)
        row_a, row_b = a[a["t"] == T], b[b["t"] == T]
        pd.testing.assert_frame_equal(row_a.reset_index(drop=True), row_b.reset_index(drop=True), check_exact=True)
        # ... and the poison does reach later candles (so the test would notice a broken filter)
        later_a, later_b = a[a["t"] == T + 60_000], b[b["t"] == T + 60_000]
        assert not later_a["sent_ema_5m"].equals(later_b["sent_ema_5m"])
    finally:
        poisoned.command(f"DROP DATABASE IF EXISTS {poisoned.database}")


def test_shuffled_arrival_within_the_rules_gives_identical_features(
    store: Store, tmp_path: Path, chdb_dir: Path
) -> None:
    records = [r for r, _ in sim(symbols=2, hours=1.0)]
    # Shuffle ticks only among ticks sharing the same second of ingest time: the rules
    # (ts < T, ingest_ts <= T + grace) cannot tell those orders apart.
    rng = random.Random(3)
    keyed = [(r["ingest_ts"] // 1000, rng.random(), r) for r in records]
    shuffled = [r for *_, r in sorted(keyed, key=lambda k: (k[0], k[1]))]
    assert shuffled != records
    run_records(store, records, tmp_path)
    other = Store(f"chdb://{chdb_dir}", database=store.database + "_shuffled")
    other.migrate()
    try:
        run_records(other, copy.deepcopy(shuffled), tmp_path)
        pd.testing.assert_frame_equal(_features(other), _features(store), check_exact=True)
    finally:
        other.command(f"DROP DATABASE IF EXISTS {other.database}")


def test_provider_disabled_after_failure_streak_and_reenabled_by_control(store: Store, tmp_path: Path) -> None:
    base = {"symbol": "XRPUSDT", "provider": "flaky"}
    bad = [{**base, "ts": START + i, "score": 3.0, "ingest_ts": START + i} for i in range(5)]
    after = [{**base, "ts": START + 100, "score": 0.1, "id": "ok-1", "ingest_ts": START + 100}]
    control = [{"_control": "enable_provider", "provider": "flaky"}]
    again = [{**base, "ts": START + 200, "score": 0.2, "id": "ok-2", "ingest_ts": START + 200}]
    run_records(store, bad + after + control + again, tmp_path, SENTIMENT_DISABLE_FAILURE_STREAK=5)
    ids = {r["id"] for r in store.rows("SELECT id FROM {db}.sentiment_ticks FINAL")}
    assert ids == {"ok-2"}
    reasons = [r["reason"] for r in store.rows("SELECT reason FROM {db}.rejected_records FINAL")]
    assert sum("score" in r for r in reasons) == 5
    assert any("disabled" in r for r in reasons)


@pytest.mark.parametrize("include", [True, False])
def test_include_sentiment_switch(store: Store, tmp_path: Path, include: bool) -> None:
    records = [r for r, _ in sim(symbols=1, hours=0.5)]
    run_records(store, records, tmp_path, TRAINING_INCLUDE_SENTIMENT=include)
    feats = _features(store)
    assert len(feats) > 20
    if include:
        assert feats["sent_ema_15m"].notna().mean() > 0.9
    else:
        assert feats["sent_ema_15m"].isna().all() and (feats["join_status"] == "excluded").all()


def test_enable_request_reaches_the_gate_of_another_partition(store: Store, tmp_path: Path) -> None:
    """The admin endpoint's control record enters through the HTTP partition; a provider
    disabled on the simulator/Kafka partition must be re-enabled too."""
    from dataflows import decode
    from dataflows.hooks import FlowHooks
    from dataflows.sources import QueueSource  # noqa: F401 - documents the embedded partitions

    hooks = FlowHooks()

    base = {"symbol": "XRPUSDT", "provider": "flaky2"}
    bad = [{**base, "ts": START + i, "score": 3.0, "ingest_ts": START + i} for i in range(5)]
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"))
    ok_after = [{**base, "ts": START + 500, "score": 0.2, "id": "after", "ingest_ts": START + 500}]
    flow = build_flow(
        settings,
        [
            RecordsSource(bad, source="feed"),
            RecordsSource([{"_control": "enable_provider", "provider": "flaky2"}], source="http"),
        ],
        store_factory=lambda: store,
        options=FlowOptions(live=False, with_model=False, publish_events=False),
        hooks=hooks,
    )
    run_main(flow)
    assert "flaky2" in hooks.enable_requests
    # A new run of the feed partition (its gate restored as disabled) sees the request and lets ticks in.
    gate = decode.DecodeLogic(decode.DecodeConfig(), decode.GateState(disabled={"flaky2"}), hooks)
    out, _ = gate.on_batch([[("feed", ok_after[0], None)]])
    assert [symbol for item in out if isinstance(item, ShardWork) for symbol, _ in item.work] == [base["symbol"]]


def test_parquet_input_gives_the_same_rows_as_jsonl(store: Store, tmp_path: Path, chdb_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataflows.simulator import write_files
    from tickcast.app.backfill import run_replay

    cfg = SimConfig(symbols=2, hours=1.0, seed=3, start_ms=START, malformed_rate=0.02)
    jsonl = tmp_path / "jsonl"
    write_files(cfg, jsonl)
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    import orjson

    for name in ("ticks", "candles"):
        rows = [orjson.loads(line) for line in (jsonl / f"{name}.jsonl").read_bytes().splitlines() if line.strip()]
        # keep the malformed values as they are: strings where numbers belong stay strings
        table = pa.Table.from_pylist(
            [
                {k: (orjson.dumps(v).decode() if k == "meta" else v) for k, v in r.items()}
                for r in rows
                if all(
                    not isinstance(v, str) or k in ("symbol", "provider", "id", "interval", "meta")
                    for k, v in r.items()
                )
            ]
        )
        pq.write_table(table, parquet / f"{name}.parquet")
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "m"))
    run_replay(settings, inputs=[parquet], store=store, progress=False, with_model=False)
    other = Store(f"chdb://{chdb_dir}", database=store.database + "_jsonl")
    other.migrate()
    try:
        run_replay(settings, inputs=[jsonl], store=other, progress=False, with_model=False)
        for table in ("candles", "sentiment_bars", "features"):
            assert store.count(table) == other.count(table) > 0, table
        ids = "SELECT id FROM {db}.sentiment_ticks FINAL ORDER BY id"
        assert [r["id"] for r in store.rows(ids)] == [r["id"] for r in other.rows(ids)]
    finally:
        other.command(f"DROP DATABASE IF EXISTS {other.database}")


def test_a_live_activation_spanning_more_than_the_bar_ring_joins_like_one_record_at_a_time(
    store: Store, tmp_path: Path, chdb_dir: Path
) -> None:
    """A live flow (wall-clock join timeouts on) handed 8 hours of two symbols as ONE queue item:
    a single activation spans ~480 minutes, beyond the shards' 256-bar ring (a busy live flow
    that queued several Kafka batches). Every candle still gets the bar it had one record at a
    time: the decode step records where each candle came among its symbol's ticks and the shard
    joins in that order. The features equal the per-record replay's, row for row."""
    import queue

    from dataflows.sources import STOP, QueueSource

    records = [r for r, _ in sim(symbols=2, hours=8.0)]
    assert max(r.get("ingest_ts", 0) for r in records) - START > 256 * 60_000
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"))
    per_record = Store(f"chdb://{chdb_dir}", database=store.database + "_one_by_one")
    per_record.migrate()
    try:
        run_main(
            build_flow(
                settings,
                [RecordsSource(copy.deepcopy(records), batch_size=1)],
                store_factory=lambda: per_record,
                options=FlowOptions(live=False, with_model=False, publish_events=False),
            )
        )
        q: queue.Queue[Any] = queue.Queue()
        q.put([("http", record, None) for record in copy.deepcopy(records)])  # one item: one activation
        q.put(STOP)
        run_main(
            build_flow(
                settings,
                [QueueSource(q, max_batch=len(records) + 1)],
                store_factory=lambda: store,
                options=FlowOptions(live=True, with_model=False, publish_events=False),
            )
        )
        live, reference = _features(store), _features(per_record)
        assert len(reference) > 900 and (reference.join_status == "ok").mean() > 0.9
        pd.testing.assert_frame_equal(live, reference, check_exact=True)
    finally:
        per_record.command(f"DROP DATABASE IF EXISTS {per_record.database}")


def test_a_parquet_file_with_nan_and_inf_times_and_scores_is_replayed_with_each_bad_row_rejected(
    store: Store, tmp_path: Path
) -> None:
    """Parquet can hold what JSON cannot (NaN, ±inf in float columns). One such value once
    stopped the whole replay (the file source's ordering key called int(nan)); now each bad row
    is rejected with its reason and the good ones are stored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tickcast.app.backfill import run_replay

    t0 = START
    pq.write_table(
        pa.table(
            {
                "id": ["ok1", "nan_ingest", "inf_ingest", "nan_score", "nan_ts", "ok2"],
                "symbol": ["BTCUSDT"] * 6,
                "provider": ["cryptopanic"] * 6,
                "ts": pa.array([t0, t0 + 1_000, t0 + 2_000, t0 + 3_000, float("nan"), t0 + 5_000], pa.float64()),
                "ingest_ts": pa.array(
                    [t0 + 100, float("nan"), float("inf"), t0 + 3_100, t0 + 4_100, t0 + 5_100], pa.float64()
                ),
                "score": [0.1, 0.2, 0.3, float("nan"), 0.5, 0.6],
            }
        ),
        tmp_path / "odd.parquet",
    )
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"))
    run_replay(settings, inputs=[tmp_path / "odd.parquet"], store=store, with_model=False, progress=False)
    stored = {r["id"] for r in store.rows("SELECT id FROM {db}.sentiment_ticks FINAL")}
    assert stored == {"ok1", "ok2"}
    reasons = {
        orjson.loads(r["payload"])["id"]: r["reason"]
        for r in store.rows("SELECT reason, payload FROM {db}.rejected_records")
    }
    assert set(reasons) == {"nan_ingest", "inf_ingest", "nan_score", "nan_ts"}
    assert "'ingest_ts'" in reasons["nan_ingest"] and "nan" in reasons["nan_ingest"]
    assert "'ingest_ts'" in reasons["inf_ingest"] and "inf" in reasons["inf_ingest"]
    assert "'score'" in reasons["nan_score"] and "'ts'" in reasons["nan_ts"]
