"""Backfill replays: files, Kafka topics (beginning to current end) or rows already stored."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tickcast.app.progress_bar import run_with_bar
from tickcast.settings import Settings
from tickcast.store import Store

SUMMARY_TABLES = (
    "sentiment_ticks",
    "candles",
    "rejected_records",
    "sentiment_bars",
    "features",
    "labels",
    "predictions",
    "calibration_windows",
)


def kafka_messages(settings: Settings) -> int | None:
    """Messages in every partition of the ticks and candles topics (the progress bar's total;
    a resumed replay counts only what it reads after the resume). None if the broker cannot tell."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from dataflows.kafka.admin import topic_partition_counts

    topics = (settings.TICKCAST_TOPIC_TICKS, settings.TICKCAST_TOPIC_CANDLES)
    consumer = Consumer({"bootstrap.servers": settings.TICKCAST_KAFKA_BOOTSTRAP, "group.id": "tickcast-count"})
    try:
        total = 0
        for topic, n in topic_partition_counts(settings.TICKCAST_KAFKA_BOOTSTRAP or "", topics).items():
            for i in range(n):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, i), timeout=10)
                total += max(0, high - low)
        return total
    except (KafkaException, RuntimeError):
        return None
    finally:
        consumer.close()


def stored_records(store: Store) -> list[dict[str, Any]]:
    """Ticks and candles as stored (with their ingest_ts), merged in ingest order."""
    ticks = store.rows(
        "SELECT id, symbol, toUnixTimestamp64Milli(ts) AS ts, score, polarity, provider, meta, "
        "toUnixTimestamp64Milli(ingest_ts) AS ingest_ts FROM {db}.sentiment_ticks FINAL"
    )
    candles = store.rows(
        "SELECT symbol, interval, toUnixTimestamp64Milli(open_time) AS open_time, "
        "toUnixTimestamp64Milli(close_time) AS close_time, open, high, low, close, volume, "
        "toUnixTimestamp64Milli(ingest_ts) AS ingest_ts FROM {db}.candles FINAL"
    )
    import orjson

    for t in ticks:
        t["meta"] = orjson.loads(t["meta"] or "{}")
    # Ties: ticks before candles, as the live sources deliver them.
    merged = [(t["ingest_ts"], 0, t["ts"], t) for t in ticks] + [
        (c["ingest_ts"], 1, c["close_time"], c) for c in candles
    ]
    merged.sort(key=lambda item: item[:3])
    return [item[3] for item in merged]


REPLAY_ACCOUNT = "replay"
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # TRADING_ACCOUNT's pattern


class ReplayAccountError(ValueError):
    """A replay may not trade into this account."""


def replay_account(settings: Settings, account: str) -> str:
    """The account a replay trades under: never the live one (TRADING_ACCOUNT), whose rows a
    replay would otherwise overwrite and add to (its guards, equity and PnL are the operator's)."""
    if not _ACCOUNT_NAME.match(account):
        raise ReplayAccountError(f"replay account {account!r}: letters, digits, '.', '_' or '-', at most 64")
    if account == settings.TRADING_ACCOUNT:
        raise ReplayAccountError(
            f"replay account {account!r} is the live trading account (TRADING_ACCOUNT={settings.TRADING_ACCOUNT}): "
            f"a replay trades into an account of its own (--account, default {REPLAY_ACCOUNT!r})"
        )
    return account


def _open_store(store: Store) -> dict[str, int]:
    """Migrate the store (opening it: chdb's start-up) and count the summary's tables."""
    store.migrate()
    return {t: store.count(t) for t in SUMMARY_TABLES}


def run_replay(
    settings: Settings,
    *,
    inputs: list[Path] | None = None,
    kafka: bool = False,
    from_store: bool = False,
    recovery_dir: Path | None = None,
    with_model: bool = True,
    progress: bool = True,
    store: Store | None = None,
    tune: bool = False,
    account: str = REPLAY_ACCOUNT,
) -> str:
    """Replay recorded input to its end. Trading (when TRADING_ENABLED) writes under `account`,
    never the live one, and is paper only: a replay's flow is not live, so it never resolves
    the exchange gate (`build_flow` does that for live flows alone)."""
    account = replay_account(settings, account)
    emitted = [0]

    def on_emit(n: int) -> None:
        emitted[0] = n

    batch = settings.TICKCAST_REPLAY_BATCH
    # The store is opened, migrated and counted on a thread of its own, beside the imports of
    # the flow's modules (~0.8 s, here rather than at the module's top) and the JSONL files'
    # first pass (order check, record count), which starts on threads of its own as soon as
    # `FileReplaySource` is made: chdb's start-up and DDL (~0.4 s) release the GIL for part of
    # their time, so the three run beside each other on two cores rather than one after another.
    store = store or Store(settings.TICKCAST_CLICKHOUSE_URL)
    # Absolute before the store thread starts: chdb's start-up moves the process's working
    # directory for a moment (docs/decisions.md, "Absolute input paths"), and the source below
    # is made while it may.
    inputs = [Path(p).absolute() for p in inputs] if inputs else inputs
    pool = ThreadPoolExecutor(1, thread_name_prefix="replay-store")
    opened = pool.submit(_open_store, store)
    pool.shutdown(wait=False)
    try:
        from dataflows.sources import FileReplaySource, RecordsSource

        files = FileReplaySource(inputs, batch_size=batch, on_emit=on_emit) if inputs else None
        from dataflows.signals import FlowOptions, build_flow, kafka_source, prepare_recovery
    except BaseException:
        wait([opened])  # the store is not left in use by the thread
        raise
    before = opened.result()
    if tune:
        from tickcast.gc_tuning import tune_gc

        # no full collection first: a replay's process ends with the replay, so what start-up
        # left for the collector can as well stay (frozen) until then
        tune_gc(collect=False)
    total: int | None
    source: Any
    if files is not None:
        source = files
        total = files.count_records()
    elif from_store:
        records = stored_records(store)
        source = RecordsSource(records, source="store", batch_size=batch, on_emit=on_emit)
        total = len(records)
    elif kafka:
        from dataflows.counting import CountingSource

        if not settings.kafka_enabled:
            raise RuntimeError("TICKCAST_KAFKA_BOOTSTRAP is not set")
        source = CountingSource(kafka_source(settings, tail=False), on_emit=on_emit)
        total = kafka_messages(settings)
    else:
        raise ValueError("nothing to replay")

    flow = build_flow(
        settings,
        [source],
        store_factory=lambda: store,
        options=FlowOptions(
            live=False,  # paper only: no exchange gate, no adapter
            with_model=with_model,
            publish_events=False,
            recovery=recovery_dir is not None,
            trading_account=account,
        ),
        flow_id="replay",
    )
    recovery = prepare_recovery(recovery_dir) if recovery_dir else None

    def job() -> None:
        from datetime import timedelta

        from bytewax.testing import run_main

        run_main(flow, epoch_interval=timedelta(seconds=settings.TICKCAST_SNAPSHOT_SECONDS), recovery_config=recovery)

    started = time.monotonic()
    run_with_bar(job, lambda: emitted[0], name="replay", unit="rec", total=total, progress=progress)
    elapsed = time.monotonic() - started
    after = {t: store.count(t) for t in SUMMARY_TABLES}
    added = ", ".join(f"{t}=+{after[t] - before[t]}" for t in SUMMARY_TABLES)
    rate = emitted[0] / elapsed if elapsed > 0 else 0.0
    of = f" of {total:,}" if total is not None and total != emitted[0] else ""
    return f"replayed {emitted[0]:,} records{of} in {elapsed:.1f}s ({rate:,.0f} rec/s); rows: {added}"
