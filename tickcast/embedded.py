"""Process assembly: the embedded system (`tickcast up`) and the distributed roles.

Embedded = one process: the simulator and the HTTP ingest queue feed the Bytewax
flow in a thread; the flow writes to the in-process ClickHouse engine and the
in-process bus; the Starlette API serves both. A chdb directory can be opened by
one process only, which is why it is all one process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dataflows.signals import FlowOptions, build_flow, kafka_source, run_flow_in_thread
from dataflows.sources import BACKFILL_DONE, STOP, QueueSource, SimulatorSource
from tickcast.bus import IdClock, LocalBus
from tickcast.gc_tuning import tune_gc
from tickcast.settings import Settings
from tickcast.store import Store

log = logging.getLogger(__name__)
# Without a recovery store an epoch only paces Bytewax's progress tracking, and every epoch
# end stalls the flow for tens of ms (measured: the live POST -> SSE p99 fell from ~50 to
# ~26 ms going from 1 s to 10 s, Bytewax's own default without recovery).
EPOCH_WITHOUT_RECOVERY_S = 10.0


def simulator_factory(settings: Settings) -> Callable[[], Iterator[dict[str, Any]]]:
    """The simulator as a live feed: the last TICKCAST_SIM_BACKFILL_HOURS at once, then paced.

    Records before "now" are due immediately (the backfill); later ones are due at
    `start + (ingest_ts - now) / speed` of wall clock.
    """
    from dataflows.simulator import SimConfig, generate

    now_ms = int(time.time() * 1000)
    backfill_ms = int(settings.TICKCAST_SIM_BACKFILL_HOURS * 3_600_000)
    start_ms = (now_ms - backfill_ms) // 60_000 * 60_000
    wall0 = time.time()
    speed = settings.TICKCAST_SIM_SPEED
    cfg = SimConfig(
        symbols=settings.TICKCAST_SIM_SYMBOLS, hours=float("inf"), seed=settings.TICKCAST_SIM_SEED, start_ms=start_ms
    )

    def records() -> Iterator[dict[str, Any]]:
        for record in generate(cfg):
            ahead = record["ingest_ts"] - now_ms
            if ahead > 0:
                record["_due_wall"] = wall0 + ahead / 1000 / speed
            yield record

    return records


class EmbeddedSystem:
    """Everything `tickcast up` runs, startable from tests too."""

    def __init__(self, settings: Settings, *, simulator: bool = True, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.TICKCAST_CLICKHOUSE_URL)
        self.store.migrate()
        self.bus = LocalBus()
        self.ids = IdClock()
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.stopping = threading.Event()
        sources: list[Any] = [QueueSource(self.inbox)]
        if simulator:
            sources.insert(0, SimulatorSource(simulator_factory(settings), stop=self.stopping))
        if settings.kafka_enabled:
            sources.append(kafka_source(settings, tail=True))
        self.flow = build_flow(
            settings,
            sources,
            store_factory=lambda: self.store,
            bus=self.bus,
            ids=self.ids,
            options=FlowOptions(live=True, recovery=bool(settings.TICKCAST_RECOVERY_DIR)),
        )
        self.jobs = make_job_center(settings, self.store, self.bus, self.ids, ingest=self.ingest)
        self.jobs.mark_interrupted()  # jobs a dead process left queued/running are failed, not "running" forever
        self.thread: threading.Thread | None = None
        self.simulator = simulator

    def ingest(self, records: list[dict[str, Any]]) -> None:
        now = int(time.time() * 1000)
        self.inbox.put([("http", record, now) for record in records])

    def start_flow(self) -> None:
        from dataflows.model_stage import set_job_starter

        set_job_starter(lambda kind, params, trigger: self.jobs.start(kind, params, trigger))
        self.thread = run_flow_in_thread(
            self.flow,
            recovery_dir=self.settings.TICKCAST_RECOVERY_DIR,
            snapshot_seconds=(
                self.settings.TICKCAST_SNAPSHOT_SECONDS
                if self.settings.TICKCAST_RECOVERY_DIR
                else EPOCH_WITHOUT_RECOVERY_S
            ),
        )
        if self.simulator:
            threading.Thread(target=self._bootstrap_model, name="bootstrap-model", daemon=True).start()

    def stop(self, timeout: float = 30.0) -> None:
        """End the flow cleanly (sources finish, sinks flush) and stop the job center."""
        self.stopping.set()
        self.inbox.put(STOP)
        if self.thread is not None:
            self.thread.join(timeout)
        self.jobs.close(wait=False)

    def flow_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _bootstrap_model(self) -> None:
        """First run with the simulator: once the backfill is in, train and promote a first model
        so the dashboard shows real predictions (skipped when a production model exists)."""
        from tickcast.lifecycle import registry_for

        if registry_for(self.settings, None).production() is not None:
            return
        BACKFILL_DONE.wait()
        # Train on the whole backfill (the gates need a validation split large enough for a
        # stable ECE): wait until ~all of its candles are joined and labeled.
        expected = int(self.settings.TICKCAST_SIM_SYMBOLS * self.settings.TICKCAST_SIM_BACKFILL_HOURS * 60 * 0.95)
        deadline = time.time() + 600
        while time.time() < deadline and not self.stopping.is_set():
            joined = min(self.store.count("labels"), self.store.count("features"))
            if joined >= max(self.settings.MIN_TRAIN_SAMPLES, expected):
                break
            time.sleep(1)
        if self.stopping.is_set():
            return
        log.info("simulator backfill loaded; training a first model")
        self.jobs.start("train", {"promote": True}, "bootstrap")

    def app(self) -> Any:
        from api.app import create_app
        from api.context import AppContext
        from tickcast.scheduler import RetrainScheduler

        ctx = AppContext(
            settings=self.settings,
            store=self.store,
            bus=self.bus,
            ingest=self.ingest,
            jobs=self.jobs,
            registry_root=Path(self.settings.MODEL_STORE_DIR),
            flow_alive=self.flow_alive,
            id_clock=self.ids,
            scheduler=RetrainScheduler(self.jobs, self.settings),
        )
        return create_app(ctx)


def make_job_center(
    settings: Settings, store: Store, bus: LocalBus, ids: IdClock, ingest: Callable[[list[dict[str, Any]]], None]
) -> Any:
    from tickcast.jobs import JobCenter
    from tickcast.lifecycle import labeler_job, recalibrate_job, train_job

    # Two workers: a long backfill must not hold a retrain back (one job per kind still).
    jobs = JobCenter(store, bus=bus, ids=ids, max_workers=2)
    jobs.register("train", train_job(settings, store))
    jobs.register("recalibrate", recalibrate_job(settings, store))
    jobs.register("labeler", labeler_job(settings, store))
    jobs.register("backfill", backfill_job(settings, store))
    jobs.register("backtest", backtest_job(settings, store))
    return jobs


def backfill_job(
    settings: Settings, store: Store
) -> Callable[[dict[str, Any], Callable[[float, str], None]], dict[str, Any]]:
    """A backfill inside the running process (the chdb directory is ours): replay files."""

    def run(params: dict[str, Any], progress: Callable[[float, str], None]) -> dict[str, Any]:
        from tickcast.backfill import run_replay

        inputs = [Path(p) for p in params.get("inputs", [])]
        if not inputs:
            raise RuntimeError("a backfill needs 'inputs': a list of JSONL/Parquet files or folders")
        progress(0.05, f"replaying {len(inputs)} input(s)")
        summary = run_replay(settings, inputs=inputs, store=store, progress=False)
        return {"summary": summary}

    return run


def backtest_job(
    settings: Settings, store: Store
) -> Callable[[dict[str, Any], Callable[[float, str], None]], dict[str, Any]]:
    """`tickcast backtest` of the stored rows inside the running process (the report lands in
    `backtest_reports`, served by GET /api/trading/backtest)."""

    def run(params: dict[str, Any], progress: Callable[[float, str], None]) -> dict[str, Any]:
        from tickcast.backtest import run_backtest

        progress(0.05, "replaying the stored candles and predictions through the trading stage")
        doc = run_backtest(
            settings,
            store=store,
            account=str(params.get("account") or "backtest"),
            with_ablation=bool(params.get("ablation", True)),
            progress=False,
            say=lambda message: progress(0.5, message),
        )
        return {"report_id": doc["report_id"], "total_return": doc["report"]["total_return"]}

    return run


def run_embedded(settings: Settings, *, simulator: bool = True) -> None:
    import uvicorn

    system = EmbeddedSystem(settings, simulator=simulator)
    app = system.app()
    tune_gc()  # after start-up, before serving: see tickcast/gc_tuning.py
    system.start_flow()
    host, port = settings.TICKCAST_API_HOST, settings.TICKCAST_API_PORT
    log.info(
        "tickcast up: store %s, models %s, API http://%s:%d (dashboard at /, health at /healthz)",
        system.store.url,
        settings.MODEL_STORE_DIR,
        host,
        port,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level=settings.TICKCAST_LOG_LEVEL.lower())
    finally:
        system.stop(timeout=10)


def run_distributed_flow(
    settings: Settings,
    *,
    recovery_dir: str | Path | None,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """`tickcast flow`: Kafka in, ClickHouse + Kafka output topics out, with recovery."""
    from datetime import timedelta

    from bytewax._bytewax import cli_main

    from dataflows.signals import prepare_recovery

    if settings.TICKCAST_FLOW_METRICS_PORT:
        from prometheus_client import start_http_server

        start_http_server(settings.TICKCAST_FLOW_METRICS_PORT)  # the flow's own metrics (lag, joins, drift)
    store = Store(settings.TICKCAST_CLICKHOUSE_URL)
    store.migrate()
    bus = KafkaEventPublisher(settings)
    flow = build_flow(
        settings,
        [kafka_source(settings, tail=True)],
        store_factory=lambda: store,
        bus=bus,
        options=FlowOptions(live=True, recovery=recovery_dir is not None),
    )
    set_job_starter_for_flow(settings, store)
    tune_gc()
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=settings.TICKCAST_SNAPSHOT_SECONDS),
        recovery_config=prepare_recovery(recovery_dir) if recovery_dir else None,
    )


def set_job_starter_for_flow(settings: Settings, store: Store) -> None:
    """In distributed mode the flow process records drift-recommended jobs in the shared
    `jobs` table and runs them itself (AUTO_RETRAIN_ENABLED); the API replicas show them."""
    from dataflows.model_stage import set_job_starter

    jobs = make_job_center(settings, store, LocalBus(), IdClock(), ingest=lambda records: None)
    set_job_starter(lambda kind, params, trigger: jobs.start(kind, params, trigger))


class KafkaEventPublisher:
    """Distributed mode: live events go to Kafka topics that every API replica consumes."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": settings.TICKCAST_KAFKA_BOOTSTRAP, "linger.ms": 5})
        self.topics = {"predictions": settings.TICKCAST_TOPIC_PREDICTIONS}
        self.default_topic = settings.TICKCAST_TOPIC_CALIBRATION

    def publish(self, event: Any) -> None:
        import orjson

        payload = orjson.dumps(
            {"stream": event.stream, "id": event.id, "symbol": event.symbol, "ts": event.ts, "data": event.data}
        )
        self.producer.produce(
            self.topics.get(event.stream, self.default_topic), value=payload, key=(event.symbol or "").encode()
        )
        self.producer.poll(0)


def follow_kafka_events(
    settings: Settings, bus: LocalBus, ids: IdClock, *, from_offset: str = "end", stop: threading.Event | None = None
) -> list[threading.Thread]:
    """API replica side of the fan-out: every replica consumes the flow's output topics and
    republishes the events, with the flow's ids, on its own in-process bus."""
    from dataflows.kafka_io import consume_json
    from tickcast.bus import Event

    brokers = settings.TICKCAST_KAFKA_BOOTSTRAP or ""

    def follow(topic: str) -> None:
        for msg in consume_json(brokers, topic, from_offset=from_offset, stop=stop):
            ids.observe(int(msg["id"]))
            bus.publish(Event(msg["stream"], int(msg["id"]), msg["data"], msg.get("symbol"), int(msg.get("ts") or 0)))

    threads = []
    for topic in sorted({settings.TICKCAST_TOPIC_PREDICTIONS, settings.TICKCAST_TOPIC_CALIBRATION}):
        thread = threading.Thread(target=follow, args=(topic,), daemon=True, name=f"follow-{topic}")
        thread.start()
        threads.append(thread)
    return threads


def kafka_ingest(settings: Settings) -> Callable[[list[dict[str, Any]]], None]:
    """API replica side of ingest: validated records go to the input topics (keyed by symbol);
    a control record goes to every partition of the ticks topic, so every partition's gate sees it."""
    from dataflows.kafka_io import produce_records, topic_partition_counts

    brokers = settings.TICKCAST_KAFKA_BOOTSTRAP or ""
    ticks_topic, candles_topic = settings.TICKCAST_TOPIC_TICKS, settings.TICKCAST_TOPIC_CANDLES

    def ingest(records: list[dict[str, Any]]) -> None:
        ticks = [r for r in records if "score" in r]
        candles = [r for r in records if "open_time" in r]
        controls = [r for r in records if "_control" in r]
        if ticks:
            produce_records(brokers, ticks_topic, ticks)
        if candles:
            produce_records(brokers, candles_topic, candles)
        if controls:
            import orjson
            from confluent_kafka import Producer

            producer = Producer({"bootstrap.servers": brokers})
            for partition in range(max(1, topic_partition_counts(brokers, [ticks_topic]).get(ticks_topic, 1))):
                for control in controls:
                    producer.produce(ticks_topic, orjson.dumps(control), partition=partition)
            producer.flush(10)

    return ingest


def run_api_replica(settings: Settings) -> None:
    """`tickcast api`: an API replica; ingest produces to Kafka, live events come from Kafka."""
    import uvicorn

    from api.app import create_app
    from api.context import AppContext
    from dataflows.kafka_io import topic_partition_counts
    from tickcast.scheduler import RetrainScheduler

    store = Store(settings.TICKCAST_CLICKHOUSE_URL)
    store.migrate()
    bus, ids = LocalBus(), IdClock()
    follow_kafka_events(settings, bus, ids)
    ingest = kafka_ingest(settings)

    def broker_ok() -> bool:
        try:
            topic_partition_counts(settings.TICKCAST_KAFKA_BOOTSTRAP or "", [settings.TICKCAST_TOPIC_TICKS])
            return True
        except Exception:  # noqa: BLE001 - health reports, never raises
            return False

    jobs = make_job_center(settings, store, bus, ids, ingest)
    jobs.mark_interrupted()
    ctx = AppContext(
        settings=settings,
        store=store,
        bus=bus,
        ingest=ingest,
        jobs=jobs,
        registry_root=Path(settings.MODEL_STORE_DIR),
        id_clock=ids,
        broker_ok=broker_ok,
        scheduler=RetrainScheduler(jobs, settings),
    )
    app = create_app(ctx)
    tune_gc()
    uvicorn.run(app, host=settings.TICKCAST_API_HOST, port=settings.TICKCAST_API_PORT)
