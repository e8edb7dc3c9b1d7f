"""The "signals" dataflow (DESIGN §1), read top to bottom like the pipeline.

sources ──(partition, [raw])──> decode + provider gate ──(shard, [(symbol, records)])──>
per-symbol state, a few shards of symbols: dedup/late → bars + EMAs → market features → as-of join → labels
    ──features, labels──> model stage: ONNX inference (or baseline), pairing with
    labels, calibration windows, drift, accuracy
    ──bars + predictions, admin controls──> trading stage (one key): event-time order,
    paper broker, portfolio, risk guards
every step's Rows(table, [row…] | Pieces) ──> batched per table ──> ClickHouse
every step's Events([LiveEvent, …]) ──> live bus + live_events

The item types on each edge are in dataflows/items.py (drawn in docs/architecture.md);
steps are routed by type (`is_a`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource
from bytewax.operators import StatefulBatchLogic

from dataflows.batching import batch_by_key
from dataflows.decode import DecodeConfig, DecodeLogic
from dataflows.hooks import FlowHooks
from dataflows.items import (
    EVAL_SLACK_MS,
    Events,
    ExchangeOrders,
    ModelInputs,
    Rows,
    ShardWork,
    TradeBars,
    TradingControl,
    is_a,
)
from dataflows.outputs import flat_pieces, rows_in
from dataflows.placement import Placement, ProcessShare
from dataflows.progress import MarkedSource
from dataflows.sentiment_state import SentimentConfig
from dataflows.sinks import EventSink, LiveGate, StoreSink, WriteMonitor
from dataflows.symbol_logic import ShardLogic, SymbolConfig
from tickcast.bus import EventPublisher, IdClock
from tickcast.gc_tuning import idle_collector
from tickcast.settings import Settings
from tickcast.store import Store

if TYPE_CHECKING:
    from dataflows.trading.stage import StageState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowOptions:
    live: bool = True  # wall-clock join timeouts and live events; False for deterministic replays
    with_model: bool = True  # inference, calibration, drift
    publish_events: bool = True
    recovery: bool = False  # True when the flow runs with a Bytewax recovery store
    with_trading: bool | None = None  # the paper-trading stage; None: TRADING_ENABLED (needs with_model)
    trading_account: str | None = None  # None: TRADING_ACCOUNT (backtests write under their own account)
    # The trading stage's state when Bytewax has none to resume (no recovery store): the book
    # rebuilt from the stored rows at start (`StageState.resumed`), so a restart continues it.
    trading_start: StageState | None = None


def sentiment_config(settings: Settings) -> SentimentConfig:
    return SentimentConfig(
        step_ms=settings.step_ms,
        ema_windows_s=settings.ema_windows_s,
        ema_names=tuple(settings.SENTIMENT_EMA_WINDOWS),
        dedup_window_ms=settings.SENTIMENT_DEDUP_WINDOW_SEC * 1000,
        max_latency_ms=settings.SENTIMENT_MAX_LATENCY_MS,
        grace_ms=settings.FEATURE_JOIN_GRACE_MS,
        impute=settings.TRAINING_IMPUTE_SENTIMENT,
        agg_weights=dict(settings.SENTIMENT_AGG_WEIGHTS),
    )


def symbol_config(settings: Settings, options: FlowOptions) -> SymbolConfig:
    return SymbolConfig(
        sentiment=sentiment_config(settings),
        grace_ms=settings.FEATURE_JOIN_GRACE_MS,
        timeout_ms=settings.FEATURE_JOIN_TIMEOUT_MS if options.live else None,
        horizon=settings.LABEL_HORIZON,
        include_sentiment=settings.TRAINING_INCLUDE_SENTIMENT,
        step_name=settings.SENTIMENT_STEP_DEFAULT,
        publish_live=options.live and options.publish_events,
        recovery=options.recovery,
        defer_side_work=options.live,
    )


class _Busy(StatefulBatchLogic[Any, Any, Any]):
    """A stateful step that marks the live flow busy at the start and the end of each activation:
    for `sinks.LiveGate` (table inserts hold off while the flow works) and for the process's
    `idle_collector` (garbage collection waits until the flow has nothing to run)."""

    def __init__(self, logic: StatefulBatchLogic[Any, Any, Any], touch: Callable[[], None]) -> None:
        self.logic = logic
        self.touch = touch

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        self.touch()
        try:
            return self.logic.on_batch(values)
        finally:
            self.touch()

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        self.touch()
        try:
            return self.logic.on_notify()
        finally:
            self.touch()

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return self.logic.on_eof()

    def notify_at(self) -> Any:
        at = self.logic.notify_at()
        idle_collector.due(self, at is not None and at <= datetime.now(UTC))
        return at

    def snapshot(self) -> Any:
        return self.logic.snapshot()


def build_flow(
    settings: Settings,
    sources: Sequence[FixedPartitionedSource[Any, Any]],
    *,
    store_factory: Callable[[], Store],
    bus: EventPublisher | None = None,
    ids: IdClock | None = None,
    options: FlowOptions = FlowOptions(),
    flow_id: str = "signals",
    write_monitor: WriteMonitor | None = None,
    placement: Placement = Placement(),
    hooks: FlowHooks | None = None,
) -> Dataflow:
    """The signals dataflow. `placement`: this process's place in a `tickcast flow -i/-a`
    cluster (`dataflows.placement`); the default is a single process. `hooks`: what the
    flow calls out to (`dataflows.hooks`), made by the composition root; None: no job
    starter and caches of this flow's own."""
    flow = Dataflow(flow_id)
    hooks = hooks or FlowHooks()
    partitions: tuple[str, ...] = ()
    if not options.live:  # replays: every partition (all processes') bounds what the model stage can still get
        partitions = tuple(part for src in sources for part in src.list_parts())
    clustered = placement.processes > 1
    if clustered:  # each process reads its share of the source partitions
        sources = [ProcessShare(src, placement) for src in sources]
    if not options.live:  # replays: partitions report their progress to the model stage (dataflows/progress.py)
        sources = [MarkedSource(src) for src in sources]
    inputs = [op.input(f"input_{i}", flow, src) for i, src in enumerate(sources)]
    # (partition_key, [(source, payload, ingest_hint)])
    raw = inputs[0] if len(inputs) == 1 else op.merge("merge_inputs", *inputs)
    if clustered:  # decoded where it was read
        raw = op.map("pin_partitions", raw, lambda kv: (placement.pin(kv[0]), kv[1]))
    # Live: inserts wait while the stateful steps are at work on records (see sinks.LiveGate).
    gate = LiveGate() if options.live else None

    def touch() -> None:
        assert gate is not None
        gate.touch()
        idle_collector.touch()

    def busy(builder: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return builder if gate is None else (lambda state: _Busy(builder(state), touch))

    decode_cfg = DecodeConfig(
        settings.SENTIMENT_DISABLE_FAILURE_STREAK,
        settings.SENTIMENT_POS_THRESHOLD,
        recovery=options.recovery,
        trust=dict(settings.SENTIMENT_PROVIDER_TRUST_JSON),
        progress_step_ms=settings.CALIBRATION_EVAL_EVERY_SECONDS * 1000,
        progress_offset_ms=EVAL_SLACK_MS,
        max_record_bytes=settings.INGEST_MAX_RECORD_BYTES,
        max_future_ms=settings.INGEST_MAX_FUTURE_MS,
        wall_clock=options.live,
    )
    decoded = op.key_rm("decoded", op.stateful_batch("decode", raw, busy(lambda s: DecodeLogic(decode_cfg, s, hooks))))
    # ShardWork(shard, [(symbol, SymbolInput), ...] | Progress) | Rows | Events | TradingControl
    split = op.branch("split_symbols", decoded, is_a(ShardWork))
    # A symbol's shard state lives on the process that reads its partition (`Placement.pin`).
    per_shard = op.map_value(
        "records", op.key_on("key_shard", split.trues, lambda it: placement.pin(it[0])), lambda it: it[1]
    )
    # (shard, [(symbol, SymbolInput), ...])
    sym_cfg = symbol_config(settings, options)
    symbol_out = op.key_rm(
        "symbol_out", op.stateful_batch("symbol_shards", per_shard, busy(lambda s: ShardLogic(sym_cfg, s)))
    )
    # Rows | Events | ModelInputs([Features | Label | Progress, ...])
    outputs = [split.falses, symbol_out]
    trading = options.with_model and (
        settings.TRADING_ENABLED if options.with_trading is None else options.with_trading
    )
    if options.with_model:
        # imported here: a flow without the model (a `--no-model` replay) does without the
        # model and trading modules (~0.09 s of its start-up)
        from dataflows.model_stage import ModelConfig, ModelLogic

        model_in = op.map("model_inputs", op.filter("model_items", symbol_out, is_a(ModelInputs)), lambda it: it[0])
        model_cfg = ModelConfig.from_settings(
            settings, live=options.live, recovery=options.recovery, partitions=partitions, trading=trading
        )
        # One key, on worker 0: its drift and accuracy rules start jobs, which need the store.
        model_key = placement.model_key()
        model_out = op.key_rm(
            "model_out",
            op.stateful_batch(
                "model_stage",
                op.key_on("key_model", model_in, lambda _: model_key),
                busy(lambda s: ModelLogic(model_cfg, s, hooks)),
            ),
        )
        outputs.append(model_out)
        if trading:
            from dataflows.trading.exchange import ExchangeSink, adapter_from_settings, announce, resolve_gate
            from dataflows.trading.stage import StageConfig, TradingLogic

            # TradeBars([TradeBar, ...]) from the model stage + TradingControl(record) from decode,
            # all under one key: the portfolio's guards see every symbol (dataflows/trading/stage.py)
            trade_in = op.merge(
                "trading_inputs",
                op.filter("trade_items", model_out, is_a(TradeBars)),
                op.filter("trading_controls", split.falses, is_a(TradingControl)),
            )
            exchange_gate = resolve_gate(settings) if options.live else None  # SettingsError: start-up refuses
            if exchange_gate is not None:
                announce(exchange_gate)
            stage_cfg = StageConfig.from_settings(
                settings,
                live=options.live,
                publish=options.publish_events,
                recovery=options.recovery,
                account=options.trading_account,
                exchange=exchange_gate is not None and exchange_gate.sends_orders,
            )
            trading_out = op.stateful_batch(
                "trading",
                op.key_on("key_trading", trade_in, lambda _: "trading"),
                busy(lambda s: TradingLogic(stage_cfg, s if s is not None else options.trading_start)),
            )
            trading_items = op.key_rm("trading_out", trading_out)
            outputs.append(trading_items)
            if stage_cfg.exchange and exchange_gate is not None:  # (exchange implies a gate)
                adapter = adapter_from_settings(settings, exchange_gate)
                log.warning("exchange account check: %s", adapter.check())  # fails start-up when unreachable
                op.output(
                    "exchange", op.filter("exchange_orders", trading_items, is_a(ExchangeOrders)), ExchangeSink(adapter)
                )
    everything = op.merge("all_outputs", *outputs)

    table_batches = store_batches(everything, settings, recovery=options.recovery)
    sink = StoreSink(store_factory, gate=gate, monitor=write_monitor, parts=placement.store_parts())
    op.output("store", table_batches, sink)

    if options.publish_events:
        events = op.key_on("key_live", op.filter("events", everything, is_a(Events)), lambda _: "live")
        live = EventSink(bus, store_factory, ids or IdClock(), gate, write_monitor, parts=placement.live_parts())
        op.output("live", events, live)
    return flow


def store_batches(items: Stream[Any], settings: Settings, *, recovery: bool) -> Stream[tuple[str, Any]]:
    """The `Rows` among `items`, batched per table (at most TICKCAST_WRITE_FLUSH_MS old, the
    buffer part of the snapshot so a crash loses no row), as (table, (table, [piece, ...])):
    the store sink's partition needs the table with the rows. The live flow and backtests."""
    rows = op.filter("tables", items, is_a(Rows))
    # (table, [Rows(table, rows | Pieces), ...])
    batches = batch_by_key(
        "batch_rows",
        op.key_on("key_table", rows, lambda it: it[0]),
        timeout=timedelta(milliseconds=settings.TICKCAST_WRITE_FLUSH_MS),
        max_size=settings.TICKCAST_WRITE_BATCH_ROWS,
        recovery=recovery,
        size_of=lambda item: rows_in(item[1]),
    )
    return op.map("row_values", batches, lambda kv: (kv[0], (kv[0], flat_pieces([p for _, p in kv[1]]))))


CLUSTER_FILE = "tickcast-cluster.json"


class RecoveryMismatch(RuntimeError):
    """The recovery store was written by a cluster of another shape."""


def prepare_recovery(directory: str | Path, *, fresh: bool = False, placement: Placement = Placement()) -> Any:
    """A Bytewax recovery store at `directory`, created if missing: one partition per worker
    of the cluster (one for a single process), and `tickcast-cluster.json` with its shape.

    Every process of a cluster may call this at once on a shared directory: the store is
    built in a private directory and renamed into place, so exactly one of them creates it.
    A store written by a cluster of another shape is refused (`RecoveryMismatch`): the symbol
    shards are keyed per process (`Placement.pin`), so their state would not be found.

    Snapshots the last run took at epochs it never committed are deleted before this run
    starts (`dataflows.recovery_store`)."""
    from bytewax.recovery import RecoveryConfig, init_db_dir

    from dataflows.recovery_store import discard_uncommitted_snapshots

    path = Path(directory)
    if fresh and path.exists():
        shutil.rmtree(path)
    shape = {"processes": placement.processes, "workers_per_process": placement.workers_per_process}
    if not path.exists() or not any(path.iterdir()):
        path.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{path.name}.init-", dir=path.parent))
        init_db_dir(building, placement.workers)
        (building / CLUSTER_FILE).write_text(json.dumps(shape))
        try:
            building.rename(path)  # replaces an empty directory; fails on a filled one
        except OSError as exc:  # another process of the cluster created it first (or path is a mount point)
            shutil.rmtree(building, ignore_errors=True)
            _wait_for_store(path, exc)
    written = path / CLUSTER_FILE
    # A store without the file was written by a single process (before clusters were tested).
    found = json.loads(written.read_text()) if written.exists() else {"processes": 1, "workers_per_process": 1}
    if placement.processes > 1 or found["processes"] > 1:
        if found != shape:
            raise RecoveryMismatch(
                f"the recovery store {path} was written by a cluster of {found['processes']} process(es) × "
                f"{found['workers_per_process']} worker(s), this one is {shape['processes']} × "
                f"{shape['workers_per_process']}: the symbol state is kept per process, so resume with the same "
                "-a/-w, or start from an empty recovery directory (the flow then re-reads the topics from their "
                "beginning; the writes are idempotent, so nothing is duplicated)"
            )
    # Snapshots a killed run took past its resume point would later be taken for state (issue 15).
    discard_uncommitted_snapshots(path)
    return RecoveryConfig(str(path))


def _wait_for_store(path: Path, why: OSError, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path / CLUSTER_FILE).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"cannot create the recovery store {path} ({why}); use a directory inside the volume, "
                "not its mount point"
            ) from why
        time.sleep(0.05)


def run_flow(
    flow: Dataflow,
    *,
    recovery_dir: str | Path | None = None,
    snapshot_seconds: float = 5.0,
) -> None:
    """Run to completion in this thread (bounded sources end; live ones run until stopped)."""
    from bytewax.testing import run_main

    recovery = prepare_recovery(recovery_dir) if recovery_dir else None
    run_main(flow, epoch_interval=timedelta(seconds=snapshot_seconds), recovery_config=recovery)


def run_flow_in_thread(flow: Dataflow, **kwargs: Any) -> threading.Thread:
    """Run beside an asyncio server; the thread ends when the flow does."""

    def target() -> None:
        try:
            run_flow(flow, **kwargs)
        except Exception:
            log.exception("the signals dataflow stopped with an error")
            raise

    thread = threading.Thread(target=target, name="signals-flow", daemon=True)
    thread.start()
    return thread


def kafka_source(settings: Settings, *, tail: bool) -> Any:
    """The paired ticks/candles source on the configured topics (tail=False: to their current end)."""
    from dataflows.kafka.pair_source import KafkaPairSource

    # Backfills take big batches: the per-symbol steps cost ~60 µs per (symbol, batch), so
    # with 1,000 symbols a 5k batch would spend more on that than on the ticks themselves.
    return KafkaPairSource(
        settings.TICKCAST_KAFKA_BOOTSTRAP or "",
        settings.TICKCAST_TOPIC_TICKS,
        settings.TICKCAST_TOPIC_CANDLES,
        tail=tail,
        batch_size=5_000 if tail else settings.TICKCAST_REPLAY_BATCH,
        idle_release_ms=settings.TICKCAST_KAFKA_IDLE_RELEASE_MS,
    )
