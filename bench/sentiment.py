"""Sentiment replay throughput from the broker into ClickHouse, against a floor and a naive flow.

All three are measured in the same run on the same topic (tansu broker, chdb engine):

- **tickcast**: the signals flow (decode + provider gate + per-symbol dedup/late/bars/EMAs
  + batched idempotent inserts of ticks, bars and rejects), 1 Bytewax worker.
- **floor**: raw consume (confluent-kafka `assign`) + decode/validate + ClickHouse insert of
  the ticks, no processing at all — what any implementation must at least pay.
- **naive**: a per-message Bytewax flow: one item per tick, `stateful_map` per symbol with a
  pure-Python EMA update, one row item per tick into `collect` and the same insert.

Then peak RSS of the sentiment state for 1000 symbols as ticks grow (1M → 10M), which must
stay flat (bounded state).

Payloads (`--payload`): `flat`, the synthetic ticks above (no meta); `realistic`, the
simulator's own tick records as they are (nested `meta`, polarity, four providers). Sources
(`--source`): `kafka` (the topic, as above) or `file` (`tickcast replay --input`: a JSONL file,
or Parquet with `--file-format parquet`; the floor reads the file in blocks and decodes and
inserts them; there is no naive row). With `--source file` the peak RSS of a whole
`tickcast`-flow file replay is printed for the file and for one a quarter of its size, each in a
fresh process: bounded by the batch, not the file.

`--trading ab`: the trading stage's cost on this replay. The input is then the simulator's
whole record stream (ticks *and* candles, `--symbols` × as many hours as give `--ticks`
ticks) and the flow runs with the model stage (the baseline predicts; with
TRADING_TRADE_BASELINE=true and an entry threshold of 0.52 it trades on most candles, the
stage's busiest case), the trading stage off and on, interleaved in the same run (a warm-up
round first, then `--repeat` rounds alternating which goes first), for the Kafka topic and
the file; median wall times and on / off are printed per source.

    python bench/sentiment.py [--ticks 400000] [--symbols 1000] [--rss-ticks 10000000]
    python bench/sentiment.py --payload realistic --source file [--file-format parquet]
    python bench/sentiment.py --trading ab [--ticks 115131 --symbols 20] [--source kafka|file]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import resource
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _broker import tansu  # noqa: E402

from dataflows.kafka.admin import ensure_topics  # noqa: E402
from dataflows.kafka.pair_source import FETCH_CONFIG, KafkaPairSource  # noqa: E402
from dataflows.signals import FlowOptions, build_flow  # noqa: E402
from tickcast.records import Rejection, decode_record  # noqa: E402
from tickcast.settings import load_settings  # noqa: E402
from tickcast.store import Store  # noqa: E402

START = 1_763_683_200_000


def flat_ticks(n: int, symbols: int) -> list[dict[str, Any]]:
    """Synthetic ticks with a flat payload (no meta, no polarity), three providers."""
    rng = np.random.default_rng(0)
    scores = np.round(rng.uniform(-1, 1, n), 4).tolist()
    providers = ("newsapi", "twitter", "reddit")
    return [
        {
            "symbol": f"S{i % symbols:04d}USDT",
            "ts": START + i * 15,  # ~67 ticks/s overall
            "score": scores[i],
            "provider": providers[i % 3],
            "id": f"t{i}",
            "ingest_ts": START + i * 15 + 150,
        }
        for i in range(n)
    ]


def realistic_ticks(n: int, symbols: int) -> list[dict[str, Any]]:
    """The simulator's first `n` tick records, as `tickcast simulate` writes them (ingest order)."""
    from itertools import islice

    from dataflows.simulator import SimConfig, generate

    ticks = (r for r in generate(SimConfig(symbols=symbols, hours=float("inf"), start_ms=START)) if "score" in r)
    return list(islice(ticks, n))


def make_ticks(payload: str, n: int, symbols: int) -> list[dict[str, Any]]:
    return realistic_ticks(n, symbols) if payload == "realistic" else flat_ticks(n, symbols)


def write_file(ticks: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ticks), path, row_group_size=100_000)
    else:
        path.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in ticks))
    return path


def produce_ticks(broker: str, topic: str, ticks: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": broker,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2_000_000,
            "partitioner": "murmur2_random",
        }
    )
    for i, rec in enumerate(ticks):
        while True:
            try:
                producer.produce(topic, orjson.dumps(rec), key=rec["symbol"].encode(), timestamp=rec["ingest_ts"])
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(60)


def fresh_store(root: Path, name: str) -> Store:
    store = Store(f"chdb://{root}", database=name)
    store.command(f"DROP DATABASE IF EXISTS {name}")
    store.migrate()
    return store


def run_tickcast(
    broker: str | None,
    topic: str,
    store: Store,
    file: Path | None = None,
    *,
    trading: bool | None = None,
    model_dir: Path | None = None,
    candles_topic: str | None = None,
) -> float:
    """One replay. `trading` None: the sentiment flow (no model stage); False/True: with the
    model stage (baseline) and the trading stage off/on (`--trading ab`)."""
    from bytewax.testing import run_main

    from dataflows.sources import FileReplaySource

    extra: dict[str, Any] = {}
    if trading is not None:
        extra = {"MODEL_STORE_DIR": str(model_dir), "TRADING_TRADE_BASELINE": True, "TRADING_ENTRY_THRESHOLD": 0.52}
    settings = load_settings(TICKCAST_KAFKA_BOOTSTRAP=broker, **extra)  # the defaults `tickcast replay` runs with
    if file is not None:
        source: Any = FileReplaySource([file], batch_size=settings.TICKCAST_REPLAY_BATCH)
    else:
        assert broker is not None
        source = KafkaPairSource(
            broker,
            topic,
            candles_topic or f"absent-{uuid.uuid4().hex[:6]}",
            tail=False,
            batch_size=settings.TICKCAST_REPLAY_BATCH,
        )
    flow = build_flow(
        settings,
        [source],
        store_factory=lambda: store,
        options=FlowOptions(
            live=False, with_model=trading is not None, publish_events=False, with_trading=bool(trading)
        ),
    )
    t = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=5))
    return time.perf_counter() - t


def run_floor(broker: str, topic: str, store: Store, n: int) -> float:
    """Consume (the source's fetch settings) + columnar decode + Arrow insert: no processing."""
    from confluent_kafka import Consumer, TopicPartition

    from dataflows.tick_batches import table_from_records
    from dataflows.tick_decode import decode_ticks
    from tickcast.gc_tuning import collection_paused

    t = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "floor",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            **FETCH_CONFIG,
        }
    )
    meta = consumer.list_topics(timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    # inserts overlap the next consume + decode on a writer thread (chdb releases the GIL), as
    # in the flow: a floor that waited for each insert would be slower than the real thing
    writer = ThreadPoolExecutor(1)
    pending = []
    seen = 0
    while seen < n:
        with collection_paused():  # as the flow's source: no GC scans of the batch's Message objects
            msgs = [m for m in consumer.consume(200_000, timeout=0.5) if m.error() is None]
            values = [m.value() for m in msgs]
            hints = np.array([m.timestamp()[1] for m in msgs], np.int64)
            del msgs
        if not values:
            continue
        seen += len(values)
        fast = decode_ticks(values, hints, now_ms=int(time.time() * 1000))
        slow = [
            decode_record(values[i], source="kafka", now_ms=int(hints[i]), default_ingest="now")
            for i in np.flatnonzero(~fast.ok).tolist()
        ]
        pieces = [fast.table, table_from_records([d[1] for d in slow if not isinstance(d, Rejection)])]
        pending.append(
            writer.submit(
                store.insert_pieces,
                "sentiment_ticks",
                [p.append_column("weight", pa.array(np.ones(p.num_rows))) for p in pieces],
            )
        )
    for future in pending:
        future.result()
    writer.shutdown()
    consumer.close()
    return time.perf_counter() - t


def run_file_floor(file: Path, store: Store) -> float:
    """Read the file in blocks (JSONL lines / Parquet row batches), columnar decode, Arrow insert."""
    from dataflows.arrow_rows import ArrowRows
    from dataflows.arrow_ticks import decode_table
    from dataflows.file_lines import file_chunks
    from dataflows.tick_decode import decode_ticks, objects_as_json

    t = time.perf_counter()
    writer = ThreadPoolExecutor(1)
    pending = []
    for chunk in file_chunks(file):
        if isinstance(chunk.records, ArrowRows):  # Parquet: its Arrow columns, as the flow reads them
            fast = decode_table(chunk.records.table)
        else:
            objects = None
            values = list(chunk.records)
            if values and values[0].__class__ is dict:
                objects = values
                values, _ = objects_as_json(objects)
            hints = np.full(len(values), -1, np.int64)
            fast = decode_ticks(values, hints, now_ms=int(time.time() * 1000), objects=objects)
        assert fast.ok.all(), "the floor takes clean ticks only"
        table = fast.table.append_column("weight", pa.array(np.ones(fast.table.num_rows)))
        pending.append(writer.submit(store.insert_pieces, "sentiment_ticks", [table]))
    for future in pending:
        future.result()
    writer.shutdown()
    return time.perf_counter() - t


def replay_rss(file: Path) -> None:
    """A whole `tickcast` file replay in this (fresh) process; prints its peak RSS (MB)."""
    root = Path(tempfile.mkdtemp(prefix="tickcast-bench-rss-"))
    store = fresh_store(root / "ch", "b_rss")
    run_tickcast(None, "", store, file)
    print(f"{rss_mb():.0f}")


def run_naive(broker: str, topic: str, store: Store) -> float:
    import bytewax.operators as op
    from bytewax.connectors.kafka import operators as kop
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    windows = (300_000.0, 900_000.0, 3_600_000.0)

    def decode(msg: Any) -> Any:
        d = decode_record(
            msg.value, source="kafka", now_ms=msg.timestamp[1] if msg.timestamp else 0, default_ingest="now"
        )
        return None if isinstance(d, Rejection) else d[1]

    def ema(state: Any, tick: dict[str, Any]) -> Any:
        # per-message EMA: decay three sums to this tick's time, add it
        t = tick["ts"]
        if state is None:
            state = [t, [0.0] * 3, [0.0] * 3]
        dt = t - state[0]
        for i, w in enumerate(windows):
            decay = math.exp(-dt / w)
            state[1][i] = state[1][i] * decay + tick["score"]
            state[2][i] = state[2][i] * decay + 1.0
        state[0] = t
        row = {**tick, "weight": 1.0}
        return state, row

    class Sink(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
            class Part(StatelessSinkPartition):
                def write_batch(self, items: list[Any]) -> None:
                    for _key, rows in items:
                        store.insert_rows("sentiment_ticks", rows)

            return Part()

    flow = Dataflow("naive")
    kin = kop.input("kin", flow, brokers=[broker], topics=[topic], tail=False)
    ticks = op.filter_map("decode", kin.oks, decode)
    keyed = op.key_on("key", ticks, lambda r: r["symbol"])
    rows = op.stateful_map("ema", keyed, ema)
    batched = op.collect(
        "collect",
        op.key_on("rekey", op.key_rm("unkey", rows), lambda r: "t"),
        timeout=timedelta(milliseconds=500),
        max_size=50_000,
    )
    op.output("out", batched, Sink())
    t = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=5))
    return time.perf_counter() - t


def rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_growth(symbols: int, total: int) -> list[tuple[int, float]]:
    """Drive the per-symbol engines directly with `total` ticks; RSS at checkpoints."""
    from dataflows.sentiment_state import SentimentState, TickBatch

    states = [SentimentState() for _ in range(symbols)]
    per_batch = 100
    rng = np.random.default_rng(1)
    done, checkpoints, marks = 0, [], {total // 10, total // 2, total}
    t = START
    while done < total:
        for st in states:
            ts = t + np.sort(rng.integers(0, 60_000, per_batch))
            batch = TickBatch(
                ts=ts,
                ingest_ts=ts + 100,
                score=rng.uniform(-1, 1, per_batch),
                polarity=np.ones(per_batch, np.int8),
                weight=np.ones(per_batch),
                id_hash=rng.integers(-(2**62), 2**62, per_batch),
            )
            st.add_ticks(batch)
            st.advance(int(ts[-1]) + 100)
            done += per_batch
            if any(done - per_batch < m <= done for m in marks):
                gc.collect()
                checkpoints.append((done, rss_mb()))
        t += 60_000
    return checkpoints


def sim_records(n_ticks: int, symbols: int) -> list[dict[str, Any]]:
    """The simulator's records (ticks and candles, ingest order) up to its `n_ticks`-th tick."""
    from dataflows.simulator import SimConfig, generate

    out: list[dict[str, Any]] = []
    ticks = 0
    for r in generate(SimConfig(symbols=symbols, hours=float("inf"), seed=4, start_ms=START)):
        if "score" in r:
            if ticks == n_ticks:
                break
            ticks += 1
        out.append(r)
    return out


def trading_ab(args: argparse.Namespace) -> None:
    """The trading stage off and on, interleaved, per source; medians and on / off."""
    root = Path(tempfile.mkdtemp(prefix="tickcast-bench-sent-trading-"))
    records = sim_records(args.ticks, args.symbols)
    ticks = [r for r in records if "score" in r]
    candles = [r for r in records if "score" not in r]
    print(f"{len(ticks):,} ticks and {len(candles):,} candles, {args.symbols} symbols", file=sys.stderr)
    sources = [args.source] if args.source else ["kafka", "file"]
    rows: list[tuple[str, float, float, int]] = []
    with contextlib.ExitStack() as stack:
        for where in sources:
            if where == "file":
                file = write_file(records, root / f"records.{args.file_format}")

                def run(store: Store, trading: bool, file: Path = file) -> float:
                    return run_tickcast(None, "", store, file, trading=trading, model_dir=root / "models")
            else:
                broker = stack.enter_context(tansu())
                topic, ctopic = f"ticks-{uuid.uuid4().hex[:6]}", f"candles-{uuid.uuid4().hex[:6]}"
                ensure_topics(broker, {topic: args.partitions, ctopic: args.partitions})
                produce_ticks(broker, topic, ticks)
                produce_ticks(broker, ctopic, candles)

                def run(
                    store: Store, trading: bool, broker: str = broker, topic: str = topic, ctopic: str = ctopic
                ) -> float:
                    return run_tickcast(
                        broker, topic, store, trading=trading, model_dir=root / "models", candles_topic=ctopic
                    )

            times: dict[bool, list[float]] = {False: [], True: []}
            cpu: dict[bool, list[float]] = {False: [], True: []}
            fills = 0
            for r in range(args.repeat + 1):  # round 0 warms numba and the caches
                for trading in (False, True) if r % 2 == 0 else (True, False):
                    store = fresh_store(root / "ch", f"t_{where}_{r}_{int(trading)}")
                    cpu0 = time.process_time()
                    elapsed = run(store, trading)
                    used = time.process_time() - cpu0
                    stored = store.count("sentiment_ticks")
                    assert stored == len(ticks), f"stored {stored} of {len(ticks)} ticks"
                    if trading:
                        fills = store.count("fills")
                        assert fills > 0, "the trading stage made no fill"
                    if r:
                        times[trading].append(elapsed)
                        cpu[trading].append(used)
                    print(
                        f"{where} round {r}: trading={trading} {elapsed:.2f} s (CPU {used:.2f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    store.command(f"DROP DATABASE IF EXISTS {store.database}")
            med = {k: statistics.median(v) for k, v in (*times.items(), *((("cpu", k), v) for k, v in cpu.items()))}
            rows.append((where, med[False], med[True], med[("cpu", False)], med[("cpu", True)], fills))
    print(
        f"# replay with the trading stage off / on: {len(ticks):,} ticks + {len(candles):,} candles, "
        f"{args.symbols} symbols, baseline trading, 1 worker, median of {args.repeat} (interleaved)"
    )
    print(
        "| source | wall off | wall on | on / off | CPU off | CPU on | on / off | fills |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for where, off, on, coff, con, fills in rows:
        print(
            f"| {where} | {off:.2f} s | {on:.2f} s | {on / off:.3f} | {coff:.2f} s | {con:.2f} s | {con / coff:.3f} "
            f"| {fills:,} |"
        )
    print("(CPU: this process's CPU time, every thread — the engine's, the writer's — not the broker's)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss-ticks", type=int, default=10_000_000)
    parser.add_argument("--payload", choices=("flat", "realistic"), default="flat")
    parser.add_argument("--source", choices=("kafka", "file"), default=None, help="default kafka (--trading ab: both)")
    parser.add_argument("--trading", choices=("ab",), help="the trading stage off/on on the replay (see above)")
    parser.add_argument("--file-format", choices=("jsonl", "parquet"), default="jsonl")
    parser.add_argument("--no-rss", action="store_true", help="skip the RSS tables")
    parser.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--replay-rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_only:  # a fresh process, so the peak belongs to the sentiment state alone
        for n, mb in rss_growth(args.symbols, args.rss_ticks):
            print(f"{n} {mb}")
        return
    if args.replay_rss:
        replay_rss(args.replay_rss)
        return
    if args.trading:
        trading_ab(args)
        return
    args.source = args.source or "kafka"
    root = Path(tempfile.mkdtemp(prefix="tickcast-bench-sent-"))
    from tickcast.gc_tuning import tune_gc

    t = time.perf_counter()
    ticks = make_ticks(args.payload, args.ticks, args.symbols)
    print(f"made {len(ticks):,} {args.payload} ticks in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    tune_gc()  # as `tickcast replay` does; applies to all implementations alike
    names = ("floor", "tickcast", "naive") if args.source == "kafka" else ("floor", "tickcast")
    results: dict[str, list[float]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        file: Path | None = None
        broker = topic = ""
        if args.source == "file":
            file = write_file(ticks, root / f"ticks.{args.file_format}")
            print(f"wrote {file} ({file.stat().st_size / 1e6:,.0f} MB)", file=sys.stderr)
            runs = {"floor": lambda s: run_file_floor(file, s), "tickcast": lambda s: run_tickcast(None, "", s, file)}
        else:
            broker = stack.enter_context(tansu())
            topic = f"ticks-{uuid.uuid4().hex[:6]}"
            ensure_topics(broker, {topic: args.partitions})
            t = time.perf_counter()
            produce_ticks(broker, topic, ticks)
            print(f"produced {args.ticks:,} ticks in {time.perf_counter() - t:.1f}s", file=sys.stderr)
            runs = {
                "floor": lambda s: run_floor(broker, topic, s, args.ticks),
                "tickcast": lambda s: run_tickcast(broker, topic, s),
                "naive": lambda s: run_naive(broker, topic, s),
            }
        del ticks
        gc.collect()
        for r in range(args.repeat):
            for name in names:
                store = fresh_store(root / "ch", f"b_{name}_{r}")
                elapsed = runs[name](store)
                stored = store.count("sentiment_ticks")
                assert stored == args.ticks, f"{name}: stored {stored} of {args.ticks}"
                results[name].append(args.ticks / elapsed)
                print(f"run {r + 1} {name:8s}: {args.ticks / elapsed:12,.0f} ticks/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items()}
    where = f"{args.source} ({args.file_format})" if args.source == "file" else f"kafka, {args.partitions} partition(s)"
    print(
        f"# sentiment replay bench: {args.ticks:,} {args.payload} ticks, {args.symbols} symbols, {where}, "
        f"1 worker, median of {args.repeat}"
    )
    print("| implementation | ticks/s | vs floor | vs naive |\n|---|---:|---:|---:|")
    for name in names:
        naive = f"{med[name] / med['naive']:.2f}" if "naive" in med else "-"
        print(f"| {name} | {med[name]:,.0f} | {med[name] / med['floor']:.2f} | {naive} |")
    if args.no_rss:
        return
    import subprocess

    if file is not None:  # the whole replay's peak RSS, for this file and one a quarter its size
        small = write_file(make_ticks(args.payload, args.ticks // 4, args.symbols), root / f"small.{args.file_format}")
        print(f"\n# peak RSS of a `tickcast` file replay ({args.payload}, {args.file_format}), fresh process each")
        print("| ticks in the file | file MB | peak RSS (MB) |\n|---:|---:|---:|")
        for path, n in ((small, args.ticks // 4), (file, args.ticks)):
            out = subprocess.run(
                [sys.executable, __file__, "--replay-rss", str(path)], capture_output=True, text=True, check=True
            )
            print(f"| {n:,} | {path.stat().st_size / 1e6:,.0f} | {out.stdout.split()[-1]} |")
        return
    proc = subprocess.run(
        [sys.executable, __file__, "--rss-only", "--symbols", str(args.symbols), "--rss-ticks", str(args.rss_ticks)],
        capture_output=True,
        text=True,
        check=True,
    )
    points = [(int(a), float(b)) for a, b in (line.split() for line in proc.stdout.split("\n") if line.strip())]
    print(f"\n# peak RSS, {args.symbols} per-symbol sentiment states, ticks in batches of 100 per symbol")
    print("| ticks processed | peak RSS (MB) |\n|---:|---:|")
    for n, mb in points:
        print(f"| {n:,} | {mb:,.0f} |")


if __name__ == "__main__":
    main()
