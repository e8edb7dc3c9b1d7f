"""`tickcast flow` as a 2-process Bytewax cluster over the real broker, with a chdb store.

The same input topics (4 partitions each; 32 symbols, 4 hours of simulated ticks and
candles with malformed, duplicate and late records) are read by one process, by a
cluster of two (`-i 0/1 -a …`), and by a cluster whose process 1 is SIGKILLed mid-stream
and restarted from the recovery store. Their tables must be equal row for row, and equal
to a file replay of the same records (up to each symbol's last candles, which a live flow
holds until later input moves its watermark and a replay releases at end of input).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataflows.simulator import SimConfig, write_files
from tests.cluster.harness import TABLES, FlowCluster, differences, dump, flow_env, make_topics, produce
from tickcast.app.backfill import run_replay
from tickcast.settings import load_settings
from tickcast.store import Store

CONFIG = SimConfig(
    symbols=32,
    # 4 h keeps the cluster runs short. An activation spanning more than the 256-bar ring is
    # no longer a limit (tests/integration/test_signals_flow.py, the live 8-hour activation).
    hours=4.0,
    seed=18,
    start_ms=1_763_683_200_000,
    malformed_rate=0.01,
    duplicate_rate=0.02,
    late_rate=0.01,
)


class Input:
    def __init__(self, broker: str, topics: dict[str, str]) -> None:
        from dataflows.simulator import generate_labeled

        labeled = list(generate_labeled(CONFIG))
        self.broker = broker
        self.topics = topics
        self.records = [r for r, _ in labeled]
        # Candles the flow accepts (well-formed, once per key); well-formed ticks (accepted or refused).
        self.good_candles = len(
            {(r["symbol"], r["open_time"]) for r, bad in labeled if bad is None and "open_time" in r}
        )
        self.good_ticks = sum(1 for r, bad in labeled if bad is None and "score" in r)


@pytest.fixture(scope="module")
def cluster_input(kafka_broker: str) -> Input:
    inp = Input(kafka_broker, make_topics(kafka_broker))
    produce(kafka_broker, inp.topics, inp.records)
    return inp


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tickcast-cluster-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_to_end(cluster: FlowCluster, inp: Input) -> dict[str, list[dict[str, Any]]]:
    """Start, wait until the whole input is handled and the writes have settled, stop, dump."""
    try:
        cluster.start()
        cluster.wait_for_input(inp.good_candles, inp.good_ticks)
    finally:
        cluster.stop()
    return dump(cluster.store_url)


@pytest.fixture(scope="module")
def one_process(cluster_input: Input, workdir: Path) -> dict[str, list[dict[str, Any]]]:
    cluster = FlowCluster(workdir / "one", flow_env(cluster_input.broker, cluster_input.topics), processes=1)
    (workdir / "one").mkdir()
    return run_to_end(cluster, cluster_input)


def test_two_process_cluster_equals_one_process_and_a_file_replay(
    cluster_input: Input, workdir: Path, one_process: dict[str, list[dict[str, Any]]], store: Store
) -> None:
    (workdir / "two").mkdir()
    cluster = FlowCluster(workdir / "two", flow_env(cluster_input.broker, cluster_input.topics), processes=2)
    try:
        cluster.start()
        cluster.wait_for_input(cluster_input.good_candles, cluster_input.good_ticks)
        # Both processes did symbol work (process k reads partitions k and k+2); only process 0,
        # which holds the chdb store, ran the model stage and wrote rows.
        names = ("candles_ingest_total", "predictions_total", "store_rows_written_total")
        per_process = [{name: cluster.metric(name, process=k) for name in names} for k in range(2)]
    finally:
        cluster.stop()
    for k, m in enumerate(per_process):
        assert m["candles_ingest_total"] > 0.2 * cluster_input.good_candles, f"process {k} did little: {m}"
    assert per_process[0]["predictions_total"] > 0 and per_process[1]["predictions_total"] == 0
    assert per_process[0]["store_rows_written_total"] > 0 and per_process[1]["store_rows_written_total"] == 0
    two = dump(cluster.store_url)

    assert len(one_process["features"]) > 7_000 and len(one_process["sentiment_ticks"]) > 25_000
    diff = differences(two, one_process)
    assert not diff, "\n".join(f"{t}: {d}" for t, d in diff.items())

    # A file replay of the same records: the same rows, but for each symbol's tail.
    files = workdir / "files"
    write_files(CONFIG, files)
    settings = load_settings(MODEL_STORE_DIR=str(workdir / "replay-models"))
    run_replay(settings, inputs=[files], store=store, progress=False)
    replay = {
        t: _strip(store.rows(f"SELECT {cols} FROM {{db}}.{t} FINAL ORDER BY {key}"))
        for t, (key, cols) in TABLES.items()
    }
    for table in ("sentiment_ticks", "candles", "labels"):
        assert _strip(replay[table]) == _strip(two[table]), table
    for table, time_col in (("sentiment_bars", "bar_end"), ("features", "close_time"), ("predictions", "close_time")):
        live_end = {}
        for row in two[table]:
            live_end[row["symbol"]] = max(live_end.get(row["symbol"], ""), row[time_col])
        head = [r for r in replay[table] if r[time_col] <= live_end.get(r["symbol"], "")]
        tail = Counter(r["symbol"] for r in replay[table] if r[time_col] > live_end.get(r["symbol"], ""))
        assert _strip(head) == _strip(two[table]), table
        assert max(tail.values(), default=0) <= 3, f"{table}: the replay has more than a tail beyond the live run"
    # Rejections: the same records for the same reasons (the source names differ: topic vs file).
    assert Counter((r["reason"], r["payload"]) for r in replay["rejected_records"]) == Counter(
        (r["reason"], r["payload"]) for r in two["rejected_records"]
    )
    assert len(two["rejected_records"]) > 100


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as dumped by another process or this one: the same JSON-able values."""
    import json

    return json.loads(json.dumps(rows, default=str))


def test_sigkill_of_one_process_then_restart_from_recovery_gives_identical_tables(
    cluster_input: Input, workdir: Path, one_process: dict[str, list[dict[str, Any]]]
) -> None:
    """The input arrives in two halves, as a live feed does: the cluster commits snapshots
    while it waits for the second (a backlog read at once lands in the first epochs, which
    commit only once all of it is processed), then process 1 is killed mid-way through it."""
    records = cluster_input.records
    half = len(records) // 2
    while records[half]["ingest_ts"] == records[half - 1].get("ingest_ts"):  # no tie across the halves
        half += 1
    topics = make_topics(cluster_input.broker)
    produce(cluster_input.broker, topics, records[:half])
    (workdir / "kill").mkdir()
    cluster = FlowCluster(workdir / "kill", flow_env(cluster_input.broker, topics), processes=2)
    total = cluster_input.good_candles
    try:
        cluster.start()
        cluster.wait_for("candles_ingest_total", 0.4 * total, timeout=240)
        cluster.wait_quiet()
        first = cluster.metric("candles_ingest_total")
        deadline = time.monotonic() + 60
        while cluster.committed_epoch() < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster.committed_epoch() >= 3, "no snapshot committed while the cluster waited"
        produce(cluster_input.broker, topics, records[half:])
        cluster.wait_for("candles_ingest_total", first + 0.1 * (total - first), timeout=240)
        cluster.kill(1)  # a crash mid-stream: no flush, no snapshot
    finally:
        cluster.stop()  # process 0 loses its peer; whatever it does, it is stopped here
    partial = dump(cluster.store_url, {"candles": TABLES["candles"]})["candles"]
    assert 0 < len(partial) < total, "the kill did not land mid-stream"

    # A resumed cluster counts only what it processes again: wait until it has read everything.
    try:
        cluster.start()
        cluster.wait_input_consumed()
        again = cluster.metric("candles_ingest_total")
    finally:
        cluster.stop()
    assert again < total - first / 2, f"the restart re-read {again} of {total} candles: it did not resume"
    restarted = dump(cluster.store_url)
    # Other topics: decode's refusals name their topic (source, and so id); the rest is the same.
    reference = {**one_process, "rejected_records": _without_source(one_process["rejected_records"])}
    restarted["rejected_records"] = _without_source(restarted["rejected_records"])
    diff = differences(restarted, reference)
    assert not diff, "\n".join(f"{t}: {d}" for t, d in diff.items())


def _without_source(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({k: v for k, v in r.items() if k not in ("source", "id")} for r in rows),
        key=lambda r: (r["reason"], r["payload"]),
    )
