"""Inference latency: candle close -> prediction row, 1000 symbols closing together.

Runs the real signals flow (live mode, in a thread) on the real chdb engine with a
trained, promoted ONNX model. Each minute: the previous burst's rows are written first
(a real minute is long enough for that; the bench waits TICKCAST_WRITE_FLUSH_MS + 0.3 s),
the minute's ticks (one per symbol, ingested at T - 29 s) are handed over and processed,
as they would arrive during the minute; then the burst: 1000 candles closing at T plus one tick per symbol ingested after
T + grace (so the grace wait is not measured), at wall time t0; a prediction's latency is the wall time its live event is published
(after the event is stored in live_events) minus t0. Also: ONNX µs/row, batched vs one row at a time.

    python bench/inference.py [--symbols 1000] [--bursts 15] [--ticks-in-burst] [--sql-load [--sql-priority N]]

`--sql-load`: the SQL interface of `tickcast up` is served on the bench's store (same
limits: TICKCAST_SQL_*), and every other measured burst runs while TICKCAST_SQL_MAX_CONCURRENT
client processes send heavy ad-hoc queries in a loop (a CPU-bound scan cancelled at 1 s, an
aggregate of predictions FINAL, the labeled_predictions join); p50/p99 with and without, same
run. `--sql-priority 0` runs the queries' threads at normal priority instead of nice 19.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dataflows.signals import FlowOptions, build_flow, run_flow_in_thread
from dataflows.simulator import flat_candle
from dataflows.sources import STOP, QueueSource
from models.registry import ModelRegistry
from models.training import Gates, train_model
from tickcast.app.embedded import EPOCH_WITHOUT_RECOVERY_S
from tickcast.bus import IdClock, LocalBus
from tickcast.features import MARKET_FEATURES, SENTIMENT_FEATURES
from tickcast.settings import load_settings
from tickcast.store import Store

START = 1_763_683_200_000
GRACE = 2_000


class Recorder(LocalBus):
    """The embedded system's bus, recording when each prediction event is published, and
    how many symbols' sentiment views each tick watermark has produced."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[int, list[float]] = {}
        self.views: dict[int, int] = {}
        self.times_lock = threading.Lock()

    def publish_many(self, events) -> None:  # noqa: ANN001
        events = list(events)
        now = time.perf_counter()
        with self.times_lock:
            for event in events:
                if event.stream == "predictions":
                    self.times.setdefault(event.data["close_time"], []).append(now)
                elif event.stream == "sentiment" and event.data.get("kind") == "tick":
                    self.views[event.ts] = self.views.get(event.ts, 0) + 1
        super().publish_many(events)


class WriteWatch:
    """Wraps the store's inserts to tell when the background writers have been idle for a
    while: the minute's tick rows are written long before the candles close in a real
    minute, so the burst must not start while they are still being written."""

    def __init__(self, store: Store) -> None:
        self.active = 0
        self.last_end = time.perf_counter()
        self.lock = threading.Lock()
        insert = store.insert_pieces

        def watched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            with self.lock:
                self.active += 1
            try:
                return insert(*args, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1
                    self.last_end = time.perf_counter()

        store.insert_pieces = watched  # type: ignore[method-assign]

    def wait_idle(self, quiet_s: float, deadline: float) -> None:
        while time.time() < deadline:
            with self.lock:
                if self.active == 0 and time.perf_counter() - self.last_end >= quiet_s:
                    return
            time.sleep(0.005)


def train_and_promote(model_dir: Path) -> str:
    rng = np.random.default_rng(0)
    n = 6000
    names = list(MARKET_FEATURES) + list(SENTIMENT_FEATURES)
    X = rng.normal(size=(n, len(names)))
    logit = 1.2 * X[:, 0] - 0.8 * X[:, names.index("sent_ema_15m")]
    df = pd.DataFrame(X, columns=names)
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df["symbol"] = "S"
    df["close_time"] = START + np.arange(n) * 60_000
    result = train_model(df, feature_names=names, gates=Gates(0.5, 0.2), ablation=False)
    registry = ModelRegistry(model_dir)
    version = registry.register(result)
    registry.promote(version, cooldown_s=0, force=True)
    return version


def onnx_batched_vs_single(model_dir: Path, rows: int = 1000) -> tuple[float, float]:
    scorer = ModelRegistry(model_dir).load_production().scorer
    X = np.random.default_rng(1).normal(size=(rows, scorer.n_features)).astype(np.float32)
    scorer.predict_proba_up(X)
    batched, single = [], []
    for _ in range(7):
        t = time.perf_counter()
        scorer.predict_proba_up(X)
        batched.append((time.perf_counter() - t) / rows * 1e6)
        t = time.perf_counter()
        for i in range(rows):
            scorer.predict_proba_up(X[i : i + 1])
        single.append((time.perf_counter() - t) / rows * 1e6)
    return statistics.median(batched), statistics.median(single)


def tick(symbol: str, ts: int, ingest: int, score: float) -> dict:
    return {
        "symbol": symbol,
        "ts": ts,
        "score": score,
        "provider": "newsapi",
        "ingest_ts": ingest,
        "id": f"{symbol}-{ts}-{ingest}",
    }


HEAVY_QUERIES = (
    "SELECT count() FROM numbers(1e12) WHERE sipHash64(number) % 7 = 3",
    "SELECT symbol, count(), avg(prob), quantile(0.9)(prob) FROM predictions FINAL GROUP BY symbol ORDER BY symbol",
    "SELECT model_version, count(), avg(correct), avg(prob) FROM labeled_predictions GROUP BY model_version",
)

# One SQL user, in a process of its own (as users are): reads "1" (send) / "0" (stop sending,
# answer "idle" once the query in flight is done) / "q" (print "answered cancelled", exit)
# from stdin; while on, sends the heavy queries in turn, each with max_execution_time=1.
_CLIENT = """
import base64, json, select, sys, urllib.error, urllib.parse, urllib.request
url, key, first, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
auth = "Basic " + base64.b64encode(f"bench:{key}".encode()).decode()
on, k, answered, cancelled = False, first, 0, 0
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0 if on else 0.05)
    if ready:
        cmd = sys.stdin.readline().strip()
        if cmd == "q":
            print(answered, cancelled, flush=True)
            break
        on = cmd == "1"
        if not on:
            print("idle", flush=True)
    if not on:
        continue
    req = urllib.request.Request(url + "/?max_execution_time=1", data=queries[k % len(queries)].encode(), method="POST")
    req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
        answered += 1
    except urllib.error.HTTPError as exc:
        exc.read()
        cancelled += exc.headers.get("X-ClickHouse-Exception-Code") == "159"
    k += 1
"""


class SqlLoad:
    """The SQL interface of `tickcast up` on the bench's store, and its users sending heavy
    queries in a loop while switched on (TICKCAST_SQL_MAX_CONCURRENT client processes)."""

    def __init__(self, settings, store: Store, *, priority: int = 19) -> None:  # noqa: ANN001
        import json
        import subprocess
        import sys

        # Run as a script, this file's folder leads sys.path, and bench/api.py would shadow the api package.
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        from api.clickhouse_http import ReadOnlyEngine, SqlHttpServer, create_sql_app
        from api.clickhouse_http.server import chdb_path, limits_from

        engine = ReadOnlyEngine(str(chdb_path(store.url)), limits=limits_from(settings), database=store.database)
        # the A/B knob: the query threads' nice value (19 is what the SQL interface uses)
        engine._connection_string = engine._connection_string.replace(  # noqa: SLF001 - bench only
            "os_thread_priority=19", f"os_thread_priority={priority}"
        )
        app = create_sql_app(
            engine, api_keys=tuple(settings.API_KEYS), max_concurrent=settings.TICKCAST_SQL_MAX_CONCURRENT
        )
        self.server = SqlHttpServer(app, "127.0.0.1", 0)
        self.server.start()
        self.clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _CLIENT,
                    self.server.url,
                    settings.API_KEYS[0],
                    str(i),
                    json.dumps(HEAVY_QUERIES),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(settings.TICKCAST_SQL_MAX_CONCURRENT)
        ]
        self.answered = self.cancelled = 0
        self.loaded = False

    def _send(self, cmd: str) -> None:
        for c in self.clients:
            c.stdin.write(cmd + "\n")
            c.stdin.flush()

    def start(self) -> None:
        self._send("1")
        self.loaded = True

    def quiet(self) -> None:
        """Stop sending and wait for the queries in flight (at most ~1 s each)."""
        if self.loaded:
            self._send("0")
            for c in self.clients:
                c.stdout.readline()
            self.loaded = False

    def stop(self) -> None:
        self.quiet()
        self._send("q")
        for c in self.clients:
            answered, cancelled = c.stdout.readline().split()
            self.answered += int(answered)
            self.cancelled += int(cancelled)
            c.wait(10)
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=20, help="candles per symbol before measuring")
    parser.add_argument("--per-burst", action="store_true", help="print each burst's first/median/last latency")
    parser.add_argument(
        "--ticks-in-burst",
        action="store_true",
        help="hand over the minute's ticks with the candles instead of ~29 s before them",
    )
    parser.add_argument(
        "--sql-load",
        action="store_true",
        help="every other measured burst under heavy queries on the SQL interface (p50/p99 with and without)",
    )
    parser.add_argument(
        "--sql-priority",
        type=int,
        default=19,
        help="nice value of the SQL queries' threads (the interface uses 19; 0 shows why)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tickcast-bench-inf-"))
    version = train_and_promote(work / "models")
    b_us, s_us = onnx_batched_vs_single(work / "models")

    settings = load_settings(MODEL_STORE_DIR=str(work / "models"), FEATURE_JOIN_GRACE_MS=GRACE, MIN_TRAIN_SAMPLES=500)
    store = Store(f"chdb://{work / 'ch'}")
    store.migrate()
    writes = WriteWatch(store)
    inbox: queue.Queue = queue.Queue()
    recorder = Recorder()
    flow = build_flow(
        settings,
        [QueueSource(inbox)],
        store_factory=lambda: store,
        bus=recorder,
        ids=IdClock(),
        options=FlowOptions(live=True),
    )
    from tickcast.gc_tuning import LIVE_THRESHOLD0, tune_gc

    tune_gc(threshold0=LIVE_THRESHOLD0)  # as `tickcast up` / `tickcast flow` do
    thread = run_flow_in_thread(flow, snapshot_seconds=EPOCH_WITHOUT_RECOVERY_S)  # as `tickcast up` runs it
    symbols = [f"S{i:04d}USDT" for i in range(args.symbols)]
    rng = np.random.default_rng(2)
    prices = {s: 100 + 10 * rng.random() for s in symbols}

    def put(records: list[dict]) -> None:  # as the embedded system's HTTP ingest hands over a request
        inbox.put([("bench", r, r["ingest_ts"]) for r in records])

    def burst(k: int) -> float:
        T = START + (k + 1) * 60_000
        minute = [tick(s, T - 30_000, T - 29_000, float(rng.uniform(-1, 1))) for s in symbols]
        # A minute passes between bursts: the previous burst's rows are written (they are
        # flushed TICKCAST_WRITE_FLUSH_MS after they are made) before the next candles close.
        time.sleep(settings.TICKCAST_WRITE_FLUSH_MS / 1000 + 0.3)
        if not args.ticks_in_burst:
            # the minute's ticks arrived during the minute, ~29 s before the candle closes: by
            # the close every symbol's view of them is out and their rows are written. (A
            # fixed wait here hid a growing share of the minute's work inside the burst as the
            # symbol count grew: at 10,000 symbols the tick batch takes ~1 s.)
            ticks_at = time.perf_counter()
            put(minute)
            deadline = time.time() + 60
            while recorder.views.get(T - 29_000, 0) < len(symbols) and time.time() < deadline:
                time.sleep(0.002)
            tick_batch_ms.append((time.perf_counter() - ticks_at) * 1000)
            writes.wait_idle(settings.TICKCAST_WRITE_FLUSH_MS / 1000 + 0.1, deadline)
        records = minute if args.ticks_in_burst else []
        for s in symbols:
            prices[s] *= float(np.exp(rng.normal(0, 0.001)))
            records.append(flat_candle(s, T, prices[s]))
        # one tick per symbol ingested after T + grace: the watermark passes, the join releases
        records += [tick(s, T + 2_500, T + GRACE + 1, 0.1) for s in symbols]
        t0 = time.perf_counter()
        put(records)
        return t0

    tick_batch_ms: list[float] = []
    latencies: list[float] = []
    loaded_latencies: list[float] = []
    sql_load = SqlLoad(settings, store, priority=args.sql_priority) if args.sql_load else None
    for k in range(args.warmup + args.bursts):
        T = START + (k + 1) * 60_000
        under_load = sql_load is not None and k >= args.warmup and (k - args.warmup) % 2 == 1
        if sql_load is not None:
            if under_load:
                sql_load.start()
                time.sleep(0.3)  # the heavy queries are running when the candles close
            else:
                sql_load.quiet()
        t0 = burst(k)
        deadline = time.time() + 60
        while len(recorder.times.get(T, [])) < args.symbols and time.time() < deadline:
            time.sleep(0.002)
        if k >= args.warmup:
            burst_ms = [(t - t0) * 1000 for t in recorder.times.get(T, [])]
            (loaded_latencies if under_load else latencies).extend(burst_ms)
            if args.per_burst:
                print(
                    f"burst {k}: first {min(burst_ms):.1f} / median {np.median(burst_ms):.1f} / "
                    f"last {max(burst_ms):.1f} ms"
                )
    if sql_load is not None:
        sql_load.stop()
    inbox.put(STOP)
    thread.join(30)
    served = store.scalar("SELECT count() FROM {db}.predictions FINAL WHERE model_version = {v:String}", {"v": version})
    p50, p99 = np.percentile(latencies, [50, 99])
    print(
        f"# inference bench: {args.symbols} symbols x {args.bursts} bursts (after {args.warmup} warm-up bursts); "
        f"the minute's ticks {'in the burst' if args.ticks_in_burst else 'before the burst'}"
        + (
            f"; {len(loaded_latencies) // args.symbols} of them under heavy SQL queries "
            f"({settings.TICKCAST_SQL_MAX_CONCURRENT} client processes, max_threads={settings.TICKCAST_SQL_MAX_THREADS}, "
            f"nice {args.sql_priority})"
            if sql_load is not None
            else ""
        )
    )
    print(f"model {version}; predictions served by it: {served}")
    print("| metric | value |\n|---|---:|")
    print(f"| candle close -> prediction row, p50 | {p50:.1f} ms |")
    print(f"| candle close -> prediction row, p99 | {p99:.1f} ms |")
    if tick_batch_ms:
        print(f"| the minute's {args.symbols} ticks -> every symbol's view, p50 | {np.median(tick_batch_ms):.1f} ms |")
    if sql_load is not None and loaded_latencies:
        lp50, lp99 = np.percentile(loaded_latencies, [50, 99])
        print(f"| same, during heavy SQL queries, p50 | {lp50:.1f} ms ({lp50 / p50:.2f}x) |")
        print(f"| same, during heavy SQL queries, p99 | {lp99:.1f} ms ({lp99 / p99:.2f}x) |")
        print(
            f"| SQL queries during those bursts | {sql_load.answered} answered, "
            f"{sql_load.cancelled} cancelled at max_execution_time |"
        )
    print(f"| ONNX batched (1000 rows) | {b_us:.2f} µs/row |")
    print(f"| ONNX one row at a time | {s_us:.2f} µs/row |")
    print(f"| batched speed-up | {s_us / b_us:.1f}x |")


if __name__ == "__main__":
    main()
