"""Process assembly: the embedded system (`tickcast up`) and the distributed roles.

Embedded = one process: the simulator and the HTTP ingest queue feed the Bytewax
flow in a thread; the flow writes to the in-process ClickHouse engine and the
in-process bus; the Starlette API serves both. A chdb directory can be opened by
one process only, which is why it is all one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dataflows.hooks import FlowHooks, JobStarter
from dataflows.signals import FlowOptions, build_flow, kafka_source, run_flow
from dataflows.sinks import WriteMonitor
from dataflows.sources import STOP, QueueSource, SimulatorSource
from tickcast.acks import Receipt, StoredAcks
from tickcast.bus import EventPublisher, IdClock, LocalBus
from tickcast.gc_tuning import LIVE_THRESHOLD0, tune_gc
from tickcast.inbox import RETRY_AFTER_S, IngestInbox, IngestRefused
from tickcast.settings import Settings
from tickcast.store import Store, StoreMode

if TYPE_CHECKING:
    import uvicorn

    from dataflows.trading.stage import StageState

log = logging.getLogger(__name__)
# Without a recovery store an epoch only paces Bytewax's progress tracking, and every epoch
# end stalls the flow for tens of ms (measured: the live POST -> SSE p99 fell from ~50 to
# ~26 ms going from 1 s to 10 s, Bytewax's own default without recovery).
EPOCH_WITHOUT_RECOVERY_S = 10.0
# Exit statuses of `tickcast up` (docs/reliability.md).
EXIT_OK = 0  # stopped by SIGTERM/SIGINT, everything it held was written
EXIT_NOT_STORED = 1  # stopped, but the store still failed at the deadline: what it held is lost (logged)
EXIT_FLOW_DIED = 3  # the dataflow stopped with an error; the API went down with it


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


def resumed_trading(settings: Settings, store: Store | None) -> StageState | None:
    """The trading stage's start when Bytewax has no snapshot of it (no recovery store, or an
    empty one): the live account's book rebuilt from the stored rows (`live_book`), so a
    restart continues the book, its open positions, guards and kill switch instead of opening
    a second book beside the stored one (docs/decisions.md, "A restart continues the stored book")."""
    if store is None or not settings.TRADING_ENABLED:
        return None
    from dataflows.trading.stage import StageState
    from tickcast.app.backtest import live_book

    book = live_book(settings, store)
    return StageState.resumed(book) if book is not None else None


class EmbeddedSystem:
    """Everything `tickcast up` runs, startable from tests too."""

    def __init__(self, settings: Settings, *, simulator: bool = True, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.TICKCAST_CLICKHOUSE_URL)
        self.store.migrate()
        self.bus = LocalBus()
        self.ids = IdClock()
        # Accepted HTTP records wait here for the flow; bounded, so a flow held up by a failing
        # store turns further ingest into 503s instead of memory (docs/reliability.md).
        self.inbox = IngestInbox(settings.TICKCAST_INGEST_BUFFER_RECORDS)
        self.monitor = WriteMonitor()
        self.acks = StoredAcks() if settings.TICKCAST_INGEST_ACK == "stored" else None
        if self.acks is not None:
            self.monitor.on_written.append(self.acks.on_written)
            acks = self.acks
            self.monitor.on_failing.append(lambda problem: acks.refuse_all(f"the store is failing: {problem}"))
            self.monitor.urgent = self.acks.waiting_for  # a request waits for these rows: skip the LiveGate
        self.stopping = threading.Event()
        self.flow_error: str | None = None
        self.on_flow_death: list[Callable[[], None]] = []
        # What the flow calls out to: this system's own, so a second system in the process starts clean.
        self.hooks = FlowHooks(start_job=lambda kind, params, trigger: self.jobs.start(kind, params, trigger))
        sources: list[Any] = [QueueSource(self.inbox)]
        if simulator:
            sim = SimulatorSource(
                simulator_factory(settings), stop=self.stopping, backfill_done=self.hooks.backfill_done
            )
            sources.insert(0, sim)
        if settings.kafka_enabled:
            sources.append(kafka_source(settings, tail=True))
        self.flow = build_flow(
            settings,
            sources,
            store_factory=lambda: self.store,
            bus=self.bus,
            ids=self.ids,
            options=FlowOptions(
                live=True,
                recovery=bool(settings.TICKCAST_RECOVERY_DIR),
                trading_start=resumed_trading(settings, self.store),
            ),
            write_monitor=self.monitor,
            hooks=self.hooks,
        )
        self.jobs = make_job_center(settings, self.store, self.bus, self.ids, ingest=self.ingest)
        self.jobs.mark_interrupted()  # jobs a dead process left queued/running are failed, not "running" forever
        self.thread: threading.Thread | None = None
        self.simulator = simulator

    def ingest(self, records: list[dict[str, Any]]) -> Receipt | None:
        """Hand accepted records to the flow. Returns the receipt to wait on when 202 must mean
        stored (`TICKCAST_INGEST_ACK=stored`); raises `IngestRefused` (-> 503) when the records
        cannot be taken: the buffer is full, or (stored) the store is failing."""
        now = int(time.time() * 1000)
        if all("_control" in record for record in records):  # admin control records: no rows, never refused
            self.inbox.offer([("http", record, now) for record in records], force=True)
            return None
        if self.flow_error is not None:
            raise IngestRefused(
                f"the dataflow stopped with an error ({self.flow_error}); nothing was accepted: the process is "
                "exiting, send the records again once it is back",
                reason="flow_down",
                retry_after_s=RETRY_AFTER_S,
            )
        problem = self.monitor.problem()
        if problem and self.acks is not None:
            raise IngestRefused(
                f"the store is failing, so these records cannot be stored now ({problem}); nothing was "
                "accepted: send them again later",
                reason="store_failing",
                retry_after_s=RETRY_AFTER_S,
            )
        receipt = self.acks.register(records) if self.acks is not None else None  # before the flow can store them
        try:
            self.inbox.offer([("http", record, now) for record in records], why_full=f"; {problem}" if problem else "")
        except IngestRefused:
            if receipt is not None:
                self.acks.forget(receipt)  # type: ignore[union-attr]
            raise
        return receipt

    def forget(self, receipt: Receipt) -> None:
        """A request stopped waiting for its rows (timeout): stop tracking them."""
        if self.acks is not None:
            self.acks.forget(receipt)

    def start_flow(self) -> None:
        self.thread = threading.Thread(target=self._run_flow, name="signals-flow", daemon=True)
        self.thread.start()
        if self.simulator:
            threading.Thread(target=self._bootstrap_model, name="bootstrap-model", daemon=True).start()

    def _run_flow(self) -> None:
        try:
            run_flow(
                self.flow,
                recovery_dir=self.settings.TICKCAST_RECOVERY_DIR,
                snapshot_seconds=(
                    self.settings.TICKCAST_SNAPSHOT_SECONDS
                    if self.settings.TICKCAST_RECOVERY_DIR
                    else EPOCH_WITHOUT_RECOVERY_S
                ),
            )
        except BaseException as exc:  # noqa: BLE001 - reported through /healthz and the exit status
            if self.monitor.abandoned.is_set():  # the stop gave up on a failing store: see stop()
                log.error("the signals dataflow ended without writing what it held (the store still fails)")
                return
            cause = exc.__cause__ or exc.__context__
            self.flow_error = f"{exc}" + (f" <- {type(cause).__name__}: {cause}" if cause else "")
            log.critical("the signals dataflow stopped with an error: %s", self.flow_error, exc_info=exc)
        else:
            if not self.stopping.is_set():
                self.flow_error = "the signals dataflow ended although nothing asked it to stop"
                log.critical(self.flow_error)
        if self.flow_error is not None and not self.stopping.is_set():
            if self.acks is not None:
                self.acks.refuse_all(f"the dataflow stopped with an error: {self.flow_error}")
            for callback in self.on_flow_death:
                callback()

    def stop(self, timeout: float = 30.0) -> bool:
        """End the flow cleanly (sources finish, sinks write what they hold) within `timeout` s.

        False when that did not happen: the flow had died, or the store still failed at the
        deadline — then the flow gives up what it holds (logged with counts) and ends."""
        self.stopping.set()
        self.inbox.put(STOP)
        clean = self.flow_error is None
        if self.thread is not None:
            self.thread.join(max(0.0, timeout))
            if self.thread.is_alive():
                clean = False
                log.error(
                    "shutdown: the flow could not write what it holds within %.0f s (%s); giving up %d accepted "
                    "records still in the ingest buffer and the rows held by the flow",
                    timeout,
                    self.monitor.problem() or "the flow is busy",
                    self.inbox.records,
                )
                self.monitor.abandon()
                self.thread.join(2)
        self.jobs.close(wait=False)
        return clean

    def flow_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and self.flow_error is None

    def problems(self) -> dict[str, str]:
        """Parts that are failing now, for /healthz: `store_writes` (inserts failing), `flow` (died)."""
        out: dict[str, str] = {}
        problem = self.monitor.problem()
        if problem:
            out["store_writes"] = (
                f"{problem}; {self.inbox.records:,} of {self.inbox.max_records:,} ingest buffer records used "
                f"(TICKCAST_INGEST_ACK={self.settings.TICKCAST_INGEST_ACK})"
            )
        if self.flow_error:
            out["flow"] = f"the dataflow stopped with an error: {self.flow_error}"
        return out

    def _bootstrap_model(self) -> None:
        """First run with the simulator: once the backfill is in, train and promote a first model
        so the dashboard shows real predictions (skipped when a production model exists)."""
        from tickcast.lifecycle import registry_for

        if registry_for(self.settings, None).production() is not None:
            return
        self.hooks.backfill_done.wait()
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
        from tickcast.jobs import RetrainRecorder
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
            scheduler=RetrainScheduler(
                self.jobs, self.settings, on_schedule=RetrainRecorder(self.settings.MODEL_STORE_DIR).schedule
            ),
            problems=self.problems,
            forget_receipt=self.forget,
        )
        return create_app(ctx)


def make_job_center(
    settings: Settings,
    store: Store,
    bus: EventPublisher,
    ids: IdClock,
    ingest: Callable[[list[dict[str, Any]]], object],
) -> Any:
    from tickcast.jobs import JobCenter, RetrainRecorder
    from tickcast.lifecycle import labeler_job, recalibrate_job, train_job

    # Two workers: a long backfill must not hold a retrain back (one job per kind still).
    # RetrainRecorder keeps MODEL_STORE_DIR/metadata/retrain_metadata.json current (seed 004).
    jobs = JobCenter(store, bus=bus, ids=ids, max_workers=2, on_change=RetrainRecorder(settings.MODEL_STORE_DIR))
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
        from tickcast.app.backfill import run_replay

        inputs = [Path(p) for p in params.get("inputs", [])]
        if not inputs:
            raise RuntimeError("a backfill needs 'inputs': a list of JSONL/Parquet files or folders")
        progress(0.05, f"replaying {len(inputs)} input(s)")
        # No trading stage: the replay's own fresh book would write its fills and positions into
        # the live account (TRADING_ACCOUNT) beside the running stage's. History is traded by
        # `tickcast backtest` (its own account) once the backfill is stored.
        summary = run_replay(
            settings.model_copy(update={"TRADING_ENABLED": False}), inputs=inputs, store=store, progress=False
        )
        return {"summary": summary}

    return run


def backtest_job(
    settings: Settings, store: Store
) -> Callable[[dict[str, Any], Callable[[float, str], None]], dict[str, Any]]:
    """`tickcast backtest` of the stored rows inside the running process (the report lands in
    `backtest_reports`, served by GET /api/trading/backtest)."""

    def run(params: dict[str, Any], progress: Callable[[float, str], None]) -> dict[str, Any]:
        from tickcast.app.backtest import run_backtest

        progress(0.05, "replaying the stored candles and predictions through the trading stage")
        doc = run_backtest(
            settings,
            store=store,
            account=str(params.get("account") or "backtest"),
            with_ablation=bool(params.get("ablation", True)),
            progress=False,
            say=lambda message: progress(0.5, message),
            start=params.get("start"),
            end=params.get("end"),
        )
        return {"report_id": doc["report_id"], "total_return": doc["report"]["total_return"]}

    return run


def run_embedded(settings: Settings, *, simulator: bool = True) -> int:
    """`tickcast up`: serve until SIGTERM/SIGINT or until the dataflow dies; returns the exit status.

    A stop signal or the flow's death starts a deadline of TICKCAST_SHUTDOWN_TIMEOUT_S: the
    API stops, the flow writes what it holds, and the status says whether it all got stored
    (EXIT_OK / EXIT_NOT_STORED / EXIT_FLOW_DIED). A watchdog ends the process at the deadline
    whatever is still running; a second signal ends it at once.
    """
    import uvicorn

    system = EmbeddedSystem(settings, simulator=simulator)
    app = system.app()
    tune_gc(threshold0=LIVE_THRESHOLD0)  # after start-up, before serving: see tickcast/gc_tuning.py
    bound = settings.TICKCAST_SHUTDOWN_TIMEOUT_S
    shutdown = _Shutdown(bound)
    server = _server(
        uvicorn.Config(
            app,
            host=settings.TICKCAST_API_HOST,
            port=settings.TICKCAST_API_PORT,
            log_level=settings.TICKCAST_LOG_LEVEL.lower(),
            timeout_graceful_shutdown=max(1, int(bound / 4)),  # open SSE streams must not hold the stop
        ),
        on_signal=shutdown.begin,
    )

    def flow_died() -> None:
        shutdown.begin("the dataflow stopped")
        server.should_exit = True

    system.on_flow_death.append(flow_died)
    system.start_flow()
    log.info(
        "tickcast up: store %s, models %s, API http://%s:%d (dashboard at /, health at /healthz)",
        system.store.url,
        settings.MODEL_STORE_DIR,
        settings.TICKCAST_API_HOST,
        settings.TICKCAST_API_PORT,
    )
    from api.clickhouse_http.server import start_sql_server

    sql_server = start_sql_server(settings, system.store.url, system.store.database)  # None: off / port taken
    with _second_signal_exits(shutdown, on_first=lambda: setattr(server, "should_exit", True)):
        server.run()  # uvicorn handles the signals while it serves; ours are restored after
        shutdown.begin("the API stopped")
        if sql_server is not None:
            sql_server.stop(timeout=min(5.0, shutdown.remaining() / 4))
        clean = system.stop(timeout=shutdown.remaining() - 3.0)
    if system.flow_error is not None:
        status = EXIT_FLOW_DIED
        log.critical("tickcast up: exiting with status %d: the dataflow stopped with an error (see above)", status)
    elif not clean:
        status = EXIT_NOT_STORED
        log.critical("tickcast up: exiting with status %d: not everything accepted could be stored", status)
    else:
        status = EXIT_OK
        system.store.close()
        log.info("tickcast up: stopped in %.1f s; everything accepted was stored", shutdown.elapsed())
    return status


def _server(config: uvicorn.Config, *, on_signal: Callable[[str], None]) -> uvicorn.Server:
    """uvicorn's Server with two changes: `on_signal` hears SIGTERM/SIGINT first, and the signal
    is not re-raised after serving (uvicorn does that to end the process, which would skip
    the flush that follows)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_signal(signal.Signals(sig).name)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server(config)


class _Shutdown:
    """The stop deadline: started once (signal, flow death); a watchdog ends the process at it."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.started: float | None = None
        self._lock = threading.Lock()

    def begin(self, why: str) -> None:
        with self._lock:
            if self.started is not None:
                return
            self.started = time.monotonic()
        log.warning("tickcast up: stopping (%s); the process ends within %.0f s", why, self.bound_s)
        threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()

    def remaining(self) -> float:
        return self.bound_s if self.started is None else self.bound_s - (time.monotonic() - self.started)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def _watchdog(self) -> None:
        time.sleep(max(0.0, self.remaining()))
        log.critical(
            "tickcast up: still running %.0f s after the stop began (TICKCAST_SHUTDOWN_TIMEOUT_S): exiting now "
            "with status %d; what was not yet stored is lost",
            self.bound_s,
            EXIT_NOT_STORED,
        )
        exit_now(EXIT_NOT_STORED)


@contextlib.contextmanager
def _second_signal_exits(shutdown: _Shutdown, *, on_first: Callable[[], None]) -> Iterator[None]:
    """Outside uvicorn's own handling: a first signal starts the stop, a second one exits at once."""

    def handle(sig: int, frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if shutdown.started is None:
            shutdown.begin(name)
            on_first()
            return
        log.critical("tickcast up: %s during the stop: exiting now without waiting for the flush", name)
        exit_now(EXIT_NOT_STORED)

    handled = (signal.SIGINT, signal.SIGTERM)
    original = {sig: signal.signal(sig, handle) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)


def exit_now(status: int) -> None:
    """End the process with `status` now: no interpreter teardown, which waits for non-daemon
    threads (a running training job) and so could break the stop's time bound."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class FlowStartError(RuntimeError):
    """`tickcast flow` cannot start as configured; the message says what to change."""


def run_distributed_flow(
    settings: Settings,
    *,
    recovery_dir: str | Path | None,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """`tickcast flow`: Kafka in, ClickHouse + Kafka output topics out, with recovery.

    In a cluster (`-i/-a`) each process reads its share of the topic partitions. With a
    chdb store only process 0 opens it (migrations, the sinks, the job center); the other
    processes never do (`dataflows.placement`)."""
    from datetime import timedelta

    from bytewax._bytewax import cli_main

    from dataflows.placement import Placement
    from dataflows.signals import prepare_recovery

    placement = Placement(
        process_id=process_id or 0,
        processes=len(addresses) if addresses else 1,
        workers_per_process=workers,
        shared_store=settings.store_mode is StoreMode.SERVER,
    )
    if settings.TICKCAST_FLOW_METRICS_PORT and settings.METRICS_ENABLED:
        from prometheus_client import start_http_server

        try:  # the flow's own metrics (lag, joins, drift)
            start_http_server(settings.TICKCAST_FLOW_METRICS_PORT)
        except OSError as exc:
            raise FlowStartError(
                f"TICKCAST_FLOW_METRICS_PORT={settings.TICKCAST_FLOW_METRICS_PORT} cannot be opened ({exc}); "
                "each `tickcast flow` process on a host needs a port of its own (0 = off)"
            ) from exc
    recovery = prepare_recovery(recovery_dir, placement=placement) if recovery_dir else None
    store: Store | None = None
    hooks = FlowHooks()
    if placement.process_id == 0:  # one process migrates; the others' inserts are retried until it has
        store = Store(settings.TICKCAST_CLICKHOUSE_URL)
        store.migrate()
        hooks = FlowHooks(start_job=flow_job_starter(settings, store))  # the model stage runs on worker 0
    elif placement.owns_store:
        store = Store(settings.TICKCAST_CLICKHOUSE_URL)

    def store_factory() -> Store:
        if store is None:  # Placement lists no store partition here: Bytewax never asks
            raise RuntimeError(f"process {placement.process_id} must not open the chdb store (process 0 holds it)")
        return store

    from dataflows.kafka.fanout import KafkaEventPublisher, ensure_live_topics

    ensure_live_topics(settings)  # one topic per live stream; the replicas follow every one
    bus = KafkaEventPublisher(settings)
    flow = build_flow(
        settings,
        [kafka_source(settings, tail=True)],
        store_factory=store_factory,
        bus=bus,
        options=FlowOptions(
            live=True,
            recovery=recovery_dir is not None,
            # One process rebuilds the book from the store. In a cluster the trading key may live
            # on a process that cannot read a chdb store, or reads a server store before process 0
            # has migrated it: clusters keep the book in their recovery directory.
            trading_start=resumed_trading(settings, store) if placement.processes == 1 else None,
        ),
        write_monitor=WriteMonitor(),  # a failing store holds the flow (Kafka keeps the input); store_write_failing
        placement=placement,
        hooks=hooks,
    )
    tune_gc(threshold0=LIVE_THRESHOLD0)  # live: young collections wait for idle moments
    log.info(
        "tickcast flow: process %d of %d (%d worker(s) each), store %s%s, recovery %s",
        placement.process_id,
        placement.processes,
        workers,
        settings.TICKCAST_CLICKHOUSE_URL,
        "" if placement.owns_store else " (held by process 0)",
        recovery_dir or "off",
    )
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=settings.TICKCAST_SNAPSHOT_SECONDS),
        recovery_config=recovery,
    )


def flow_job_starter(settings: Settings, store: Store) -> JobStarter:
    """In distributed mode the flow process records drift-recommended jobs in the shared
    `jobs` table and runs them itself (AUTO_RETRAIN_ENABLED); the API replicas show them."""
    jobs = make_job_center(settings, store, LocalBus(), IdClock(), ingest=lambda records: None)
    return lambda kind, params, trigger: jobs.start(kind, params, trigger)


def run_api_replica(settings: Settings) -> None:
    """`tickcast api`: an API replica; ingest produces to Kafka, live events come from Kafka."""
    import uvicorn

    from api.app import create_app
    from api.context import AppContext
    from dataflows.kafka.admin import topic_partition_counts
    from dataflows.kafka.fanout import follow_live_topics
    from dataflows.kafka.produce import KafkaIngest
    from tickcast.jobs import RetrainRecorder
    from tickcast.scheduler import RetrainScheduler

    store = Store(settings.TICKCAST_CLICKHOUSE_URL)
    store.migrate()
    bus, ids = LocalBus(), IdClock()
    follow_live_topics(settings, bus, ids)
    ingest = KafkaIngest(settings)  # one checked producer; a POST Kafka does not take in time is a 503

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
        scheduler=RetrainScheduler(jobs, settings, on_schedule=RetrainRecorder(settings.MODEL_STORE_DIR).schedule),
    )
    app = create_app(ctx)
    tune_gc()
    uvicorn.run(app, host=settings.TICKCAST_API_HOST, port=settings.TICKCAST_API_PORT)
