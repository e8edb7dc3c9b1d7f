"""Peers, side by side, in one run: the same sentiment job in tickcast, Pathway, Quix Streams and
a naive per-message Bytewax flow, on the same input, interleaved, with an agreement check.

The job (docs/design.md §4, §5; `bench/peers_job.py` states it): decode the tick JSON, drop
late ticks, dedup by id within the window, 1-minute bars under the leak-free join rule with
sent_score/cnt/pos_ratio/d1/d5/vol_30 (empty bars forward-filled) and the elapsed-time EMAs
(5m, 15m, 60m) at each bar end.

- input: the simulator's own output, as a user makes it: `tickcast simulate --symbols …
  --hours … --seed … --duplicate-rate … --late-rate …` (ticks.jsonl, nested `meta`); provider
  trust `peers_job.BENCH_TRUST` for everyone (SENTIMENT_PROVIDER_TRUST_JSON for tickcast);
- tickcast: `tickcast replay --input ticks.jsonl --no-model --no-progress` into a fresh chdb
  store (it also stores every tick and rejected record, which the peers do not);
- pathway-1t / pathway-2t: `bench/peers_pathway.py` with PATHWAY_THREADS=1 / 2 (what
  `pathway spawn --threads N` sets), JSON Lines in, JSON Lines out;
- bytewax-naive: `bench/peers_bytewax.py`, one item per tick, file source and sink;
- quix: `bench/peers_quix.py` against tansu; the ticks are produced into a topic first
  (untimed), each run joins a new consumer group, and its time starts at the first
  message (the ~25 s group join and its imports are excluded).

Each run is its own process (peak RSS = that process's, via wait4), runs are interleaved
(A B C D E, A B C D E, …) and the table gives medians and each peer's time relative to
tickcast's. Then every run's bars (all symbols, or `--sample N` of them) are compared with
tickcast's, read back from its store's `sentiment_bars FINAL`: same (symbol, bar_end) keys,
same NULLs, and every field within `--tolerance`; the exit status is 1 if any disagrees.

Needs the peers extra in a venv of its own (docs/benchmarks.md):

    python -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]'
    .venv-peers/bin/python bench/peers.py --symbols 200 --hours 24 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers_job as job  # noqa: E402

IMPLEMENTATIONS = ("tickcast", "pathway-1t", "pathway-2t", "bytewax-naive", "quix")
DESCRIPTIONS = {
    "tickcast": "tickcast: `tickcast replay --input` (file source, columnar decode, Numba kernels, chdb store)",
    "pathway-1t": "Pathway, 1 thread: JSON Lines connector, groupby/windowby reducers, per-symbol scan UDF",
    "pathway-2t": "Pathway, 2 threads (PATHWAY_THREADS=2), same program",
    "bytewax-naive": "naive Bytewax: file source, one item per tick, `stateful_map` per symbol",
    "quix": "Quix Streams from the broker: stateful `apply` per message (RocksDB state), `to_topic`",
}


@dataclass
class Run:
    name: str
    round: int
    seconds: float  # the compared time (process wall; Quix: from its first message)
    wall: float  # process wall time
    cpu: float  # user + system CPU seconds of the process (all its threads)
    rss_mb: float  # peak RSS of the process
    output: Path


@dataclass
class Context:
    work: Path
    ticks: Path
    n_ticks: int
    params: job.JobParams
    broker: str | None = None
    topic: str | None = None
    runs: list[Run] = field(default_factory=list)
    tickcast_counts: dict[str, int] = field(default_factory=dict)  # of the last tickcast run


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_peers_installed(names: list[str]) -> None:
    need = {"pathway-1t": "pathway", "pathway-2t": "pathway", "quix": "quixstreams", "bytewax-naive": "bytewax"}
    import importlib.util

    missing = sorted({need[n] for n in names if n in need and importlib.util.find_spec(need[n]) is None})
    if missing:
        raise SystemExit(
            f"bench/peers.py needs {', '.join(missing)}: install the peers extra in a venv of its own, "
            "`python -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]'`, "
            "and run it with .venv-peers/bin/python"
        )


def check_params_match_settings(p: job.JobParams) -> None:
    """The peers' job parameters must be tickcast's defaults, or the comparison is void."""
    from tickcast.settings import Settings

    s = Settings()
    theirs = {
        "step_ms": s.step_ms,
        "windows_ms": tuple(float(w) * 1000.0 for w in s.ema_windows_s),
        "dedup_window_ms": s.SENTIMENT_DEDUP_WINDOW_SEC * 1000,
        "max_latency_ms": s.SENTIMENT_MAX_LATENCY_MS,
        "grace_ms": s.FEATURE_JOIN_GRACE_MS,
        "impute": s.TRAINING_IMPUTE_SENTIMENT,
        "ema_names": tuple(s.SENTIMENT_EMA_WINDOWS),
    }
    ours = {**{k: getattr(p, k) for k in theirs if hasattr(p, k)}, "impute": "ffill", "ema_names": ("5m", "15m", "60m")}
    if ours != theirs:
        raise SystemExit(f"peers_job.JobParams {ours} differ from tickcast's defaults {theirs}")


# --- running one implementation ------------------------------------------------------------


def run_process(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, float, str]:
    """Run to completion; (wall s, CPU s, peak RSS MB of the process, stdout). Fails loudly."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-4000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout


def last_json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no result line in {stdout[-500:]!r}")


def tickcast_cmd() -> list[str]:
    # `python -m tickcast.app.cli` is the `tickcast` command; the console script itself cannot be used
    # in the peers venv: python-sat (a Pathway dependency) installs a bin/models.py that shadows
    # tickcast's `models` package for scripts run from bin/.
    return [sys.executable, "-m", "tickcast.app.cli"]


def replay_cmd(store: Path, inputs: Path) -> list[str]:
    """`tickcast replay` of `inputs` (a file or a folder) into a fresh chdb store, no model."""
    shutil.rmtree(store, ignore_errors=True)
    return tickcast_cmd() + [
        "replay",
        "--store",
        f"chdb://{store}",
        "--input",
        str(inputs),
        "--no-model",
        "--no-progress",
    ]


def run_tickcast(ctx: Context, rnd: int, ticks: Path | None = None) -> Run:
    store = ctx.work / f"tickcast-store-{rnd}"
    cmd = replay_cmd(store, ticks or ctx.ticks)
    # cwd: the work dir, so a developer's .env cannot change tickcast's settings behind the peers' back
    env = {"SENTIMENT_PROVIDER_TRUST_JSON": json.dumps(dict(ctx.params.trust))}
    wall, cpu, rss, _ = run_process(cmd, env=env, cwd=ctx.work)
    output = ctx.work / f"out-tickcast-{rnd}.jsonl"
    *_, stdout = run_process([sys.executable, __file__, "--dump-tickcast", str(store), str(output)], cwd=ctx.work)
    ctx.tickcast_counts = last_json(stdout)
    shutil.rmtree(store, ignore_errors=True)
    return Run("tickcast", rnd, wall, wall, cpu, rss, output)


def run_script(ctx: Context, name: str, rnd: int, script: str, env: dict[str, str] | None = None) -> Run:
    output = ctx.work / f"out-{name}-{rnd}.jsonl"
    cmd = [sys.executable, str(HERE / script), "--input", str(ctx.ticks), "--out", str(output)]
    wall, cpu, rss, _ = run_process(cmd + ["--params", ctx.params.to_json()], env=env, cwd=ctx.work)
    return Run(name, rnd, wall, wall, cpu, rss, output)


def run_quix(ctx: Context, rnd: int) -> Run:
    assert ctx.broker and ctx.topic
    out_topic = f"bars-{rnd}-{uuid.uuid4().hex[:6]}"
    state = ctx.work / f"quix-state-{rnd}"
    shutil.rmtree(state, ignore_errors=True)
    cmd = [
        sys.executable,
        str(HERE / "peers_quix.py"),
        "--broker",
        ctx.broker,
        "--topic",
        ctx.topic,
        "--out-topic",
        out_topic,
        "--count",
        str(ctx.n_ticks),
        "--state-dir",
        str(state),
        "--params",
        ctx.params.to_json(),
    ]
    wall, cpu, rss, stdout = run_process(cmd, cwd=ctx.work)
    result = last_json(stdout)
    shutil.rmtree(state, ignore_errors=True)
    output = ctx.work / f"out-quix-{rnd}.jsonl"
    read_topic(ctx.broker, out_topic, output)
    return Run("quix", rnd, result["seconds"], wall, cpu, rss, output)


def run_one(ctx: Context, name: str, rnd: int) -> Run:
    if name == "tickcast":
        return run_tickcast(ctx, rnd)
    if name == "pathway-1t":
        return run_script(ctx, name, rnd, "peers_pathway.py", {"PATHWAY_THREADS": "1"})
    if name == "pathway-2t":
        return run_script(ctx, name, rnd, "peers_pathway.py", {"PATHWAY_THREADS": "2"})
    if name == "bytewax-naive":
        return run_script(ctx, name, rnd, "peers_bytewax.py")
    if name == "quix":
        return run_quix(ctx, rnd)
    raise ValueError(name)


# --- the broker side (Quix) ----------------------------------------------------------------


def create_topic(broker: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker})
    futures = admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": str(7 * 24 * 3600 * 1000)})])
    for fut in futures.values():
        fut.result(30)


def produce_file(broker: str, topic: str, path: Path) -> int:
    """Every line of the file as one message, key = symbol, timestamp = ingest_ts (the payload as is)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": broker,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if not line:
                continue
            rec = orjson.loads(line)
            while True:
                try:
                    producer.produce(topic, line, key=rec["symbol"].encode(), timestamp=rec["ingest_ts"])
                    break
                except BufferError:
                    producer.poll(0.05)
            n += 1
            if n % 10000 == 0:
                producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"could not deliver every tick to {topic}")
    return n


def read_topic(broker: str, topic: str, out: Path) -> int:
    """All messages of partition 0 of `topic` (values, one per line) into `out`."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker, "group.id": "peers-reader", "enable.auto.commit": False})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.assign([TopicPartition(topic, 0, low)])
    n, deadline = 0, time.monotonic() + 300
    with out.open("wb") as fh:
        while n < high - low:
            if time.monotonic() > deadline:
                raise RuntimeError(f"read {n} of {high - low} messages of {topic}")
            for msg in consumer.consume(10000, timeout=1.0):
                if msg.error() is None:
                    fh.write(msg.value() + b"\n")
                    n += 1
    consumer.close()
    return n


# --- agreement ----------------------------------------------------------------------------


def dump_tickcast(store_dir: Path, out: Path) -> None:
    """tickcast's bars, read back from its store (`sentiment_bars FINAL`), as JSON Lines; prints
    what it kept and refused (so the report can say the input exercised dedup and lateness)."""
    from tickcast.store import Store

    store = Store(f"chdb://{store_dir}")
    fields = ", ".join(job.FIELDS)
    rows = store.rows(
        f"SELECT symbol, toUnixTimestamp64Milli(bar_end) AS bar_end, {fields} "
        "FROM {db}.sentiment_bars FINAL WHERE step = '1m'"
    )
    with out.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")
    refused = store.rows(
        "SELECT countIf(startsWith(reason, 'duplicate')) AS duplicate, countIf(startsWith(reason, 'late')) AS late, "
        "count() AS refused FROM {db}.rejected_records FINAL"
    )[0]
    accepted = store.scalar("SELECT count() FROM {db}.sentiment_ticks FINAL")
    print(orjson.dumps({"accepted": accepted, **refused, "bars": len(rows)}).decode())


def load_bars(path: Path) -> Any:
    import pandas as pd

    rows = [orjson.loads(line) for line in path.open("rb") if line.strip()]
    df = pd.DataFrame(rows, columns=["symbol", "bar_end", *job.FIELDS, "diff"])
    if "diff" in df and df["diff"].notna().any():  # Pathway's output stream: all insertions in static mode
        if not (df["diff"] == 1).all():
            raise RuntimeError(f"{path}: retractions in the output stream")
    df = df.drop(columns=["diff"]).astype({f: "float64" for f in job.FIELDS})
    if df.duplicated(["symbol", "bar_end"]).any():
        raise RuntimeError(f"{path}: a (symbol, bar_end) appears twice")
    return df.set_index(["symbol", "bar_end"]).sort_index()


@dataclass
class Agreement:
    name: str
    rows: int
    missing: int  # tickcast bars the peer does not have
    extra: int  # peer bars tickcast does not have
    null_mismatch: int
    max_abs: float
    worst_field: str

    def ok(self, tolerance: float) -> bool:
        return self.missing == 0 and self.extra == 0 and self.null_mismatch == 0 and self.max_abs <= tolerance


def compare(name: str, ref: Any, other: Any, symbols: list[str] | None) -> Agreement:
    import numpy as np

    if symbols is not None:
        ref = ref[ref.index.get_level_values(0).isin(symbols)]
        other = other[other.index.get_level_values(0).isin(symbols)]
    missing = ref.index.difference(other.index)
    extra = other.index.difference(ref.index)
    common = ref.index.intersection(other.index)
    a, b = ref.loc[common], other.loc[common]
    worst, worst_field, nulls = 0.0, "-", 0
    for f in job.FIELDS:
        x, y = a[f].to_numpy(), b[f].to_numpy()
        nulls += int((np.isnan(x) != np.isnan(y)).sum())
        both = ~np.isnan(x) & ~np.isnan(y)
        d = float(np.abs(x[both] - y[both]).max()) if both.any() else 0.0
        if d > worst or worst_field == "-":
            worst, worst_field = max(worst, d), f
    return Agreement(name, len(common), len(missing), len(extra), nulls, worst, worst_field)


# --- main -----------------------------------------------------------------------------------


def simulate(out: Path, args: argparse.Namespace) -> Path:
    """The simulator's own output, made the way a user makes it."""
    ticks = out / "ticks.jsonl"
    if ticks.exists():
        log(f"input: reusing {ticks}")
        return ticks
    cmd = tickcast_cmd() + [
        "simulate",
        "--symbols",
        str(args.symbols),
        "--hours",
        str(args.hours),
        "--seed",
        str(args.seed),
        "--duplicate-rate",
        str(args.duplicate_rate),
        "--late-rate",
        str(args.late_rate),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    log(f"input: {' '.join(cmd[1:])} in {time.perf_counter() - started:.0f}s")
    return ticks


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:  # also brings the file into the page cache for the first run
        return sum(1 for line in fh if line.strip())


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def report(ctx: Context, names: list[str], agreements: list[Agreement], args: argparse.Namespace) -> None:
    by_name = {n: [r for r in ctx.runs if r.name == n] for n in names}
    med = {n: statistics.median(r.seconds for r in runs) for n, runs in by_name.items() if runs}
    print(
        f"\n# peers: the sentiment job on {ctx.n_ticks:,} ticks ({args.symbols} symbols × {args.hours:g} h, seed "
        f"{args.seed}, duplicate rate {args.duplicate_rate}, late rate {args.late_rate}); "
        f"{len({r.round for r in ctx.runs})} interleaved round(s), medians\n"
    )
    counts = ctx.tickcast_counts
    if counts:
        print(
            f"tickcast kept {counts.get('accepted', 0):,} ticks and refused {counts.get('duplicate', 0):,} duplicates "
            f"and {counts.get('late', 0):,} late ones ({counts.get('refused', 0):,} refused in all); "
            f"{counts.get('bars', 0):,} bars\n"
        )
    head = "| implementation | time (s) | ticks/s | time ÷ tickcast's | CPU (s) | CPU ÷ tickcast's | peak RSS (MB) | runs (s) |"
    print(head + "\n|---|---:|---:|---:|---:|---:|---:|---|")
    base = med.get("tickcast")
    cpu_med = {n: statistics.median(r.cpu for r in runs) for n, runs in by_name.items() if runs}
    for n, runs in by_name.items():
        if not runs:
            continue
        ratio = f"{med[n] / base:.2f}" if base else "-"
        rss = statistics.median(r.rss_mb for r in runs)
        cpu = cpu_med[n]
        cpu_ratio = f"{cpu / cpu_med['tickcast']:.2f}" if "tickcast" in cpu_med else "-"
        each = " / ".join(f"{r.seconds:.1f}" for r in runs)
        if n == "quix":
            each += " (process wall with the group join: " + " / ".join(f"{r.wall:.0f}" for r in runs) + ")"
        rate = fmt_rate(ctx.n_ticks / med[n])
        print(
            f"| {DESCRIPTIONS[n]} | {med[n]:.1f} | {rate} | {ratio} | {cpu:.1f} | {cpu_ratio} | {rss:,.0f} | {each} |"
        )
    if base:
        peers = {n: m for n, m in med.items() if n != "tickcast"}
        if peers:
            fastest = min(peers, key=peers.get)
            print(f"\ntickcast vs the fastest peer ({fastest}): {peers[fastest] / base:.2f}× (goal ≥ 5×)")
    if agreements:
        scope = f"{args.sample} symbols" if args.sample else "all symbols"
        print(f"\n# agreement with tickcast's sentiment_bars FINAL ({scope}, all bars, every run)\n")
        print("| implementation | runs | bars compared | missing | extra | NULL mismatches | max abs diff | field |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for n in names:
            mine = [a for a in agreements if a.name == n]
            if not mine:
                continue
            worst = max(mine, key=lambda a: (not a.ok(args.tolerance), a.max_abs))
            print(
                f"| {n} | {len(mine)} | {worst.rows:,} | {worst.missing} | {worst.extra} | {worst.null_mismatch} "
                f"| {worst.max_abs:.1e} | {worst.worst_field} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duplicate-rate", type=float, default=0.01)
    parser.add_argument("--late-rate", type=float, default=0.005)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS), help="comma-separated subset, in run order")
    parser.add_argument("--work", type=Path, help="work folder (default: a new temporary one, removed at the end)")
    parser.add_argument("--sample", type=int, default=0, help="compare this many symbols (0: all)")
    parser.add_argument("--tolerance", type=float, default=1e-9)
    parser.add_argument(
        "--report-only", action="store_true", help="no runs: the report of the runs saved in --work/results.jsonl"
    )
    parser.add_argument("--dump-tickcast", nargs=2, metavar=("STORE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump_tickcast:
        dump_tickcast(Path(args.dump_tickcast[0]), Path(args.dump_tickcast[1]))
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(IMPLEMENTATIONS)
    if unknown or "tickcast" not in names:
        raise SystemExit(f"--only takes tickcast plus any of {IMPLEMENTATIONS}; got {args.only!r}")
    check_peers_installed(names)
    params = job.JobParams()
    check_params_match_settings(params)

    keep = args.work is not None
    work = args.work or Path(tempfile.mkdtemp(prefix="tickcast-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    input_dir = work / f"sim-{args.symbols}x{args.hours:g}h-seed{args.seed}-d{args.duplicate_rate}-l{args.late_rate}"
    if args.report_only and not (input_dir / "ticks.jsonl").exists():
        raise SystemExit(f"--report-only: no {input_dir.name} in {work}; give the run's --symbols/--hours/--seed/rates")
    ticks = simulate(input_dir, args)
    ctx = Context(work, ticks, count_lines(ticks), params)
    log(f"input: {ctx.n_ticks:,} ticks in {ticks} ({ticks.stat().st_size / 1e6:,.0f} MB)")
    results = work / "results.jsonl"  # each run as it ends, so a long run interrupted still has its figures
    if args.report_only:
        saved = [orjson.loads(line) for line in results.open("rb") if line.strip()]
        ctx.runs = [Run(**{k: v for k, v in r.items() if k != "counts"}) for r in saved if r["name"] in names]
        for r in ctx.runs:
            r.output = Path(r.output)
        ctx.tickcast_counts = next((r["counts"] for r in reversed(saved) if r.get("counts")), {})
        finish(ctx, names, args, keep=True)
        return
    results.unlink(missing_ok=True)

    # Warm-up, untimed: Numba's on-disk cache for tickcast's kernels (as on any machine after its
    # first replay) on a tiny input.
    tiny = work / "warmup"
    subprocess.run(
        tickcast_cmd() + ["simulate", "--symbols", "3", "--hours", "1", "--out", str(tiny)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    run_tickcast(ctx, -1, tiny / "ticks.jsonl")

    from contextlib import ExitStack

    with ExitStack() as stack:
        if "quix" in names:
            from _broker import tansu

            ctx.broker = stack.enter_context(tansu())
            ctx.topic = f"ticks-{uuid.uuid4().hex[:6]}"
            create_topic(ctx.broker, ctx.topic)
            started = time.perf_counter()
            produced = produce_file(ctx.broker, ctx.topic, ticks)
            log(f"quix input: produced {produced:,} ticks to {ctx.topic} in {time.perf_counter() - started:.0f}s")
        for rnd in range(args.rounds):
            for name in names:
                run = run_one(ctx, name, rnd)
                ctx.runs.append(run)
                saved = {**run.__dict__, "output": str(run.output)}
                if name == "tickcast":
                    saved["counts"] = ctx.tickcast_counts
                with results.open("ab") as fh:
                    fh.write(orjson.dumps(saved) + b"\n")
                log(
                    f"round {rnd + 1} {name:14s} {run.seconds:7.1f}s (wall {run.wall:.1f}s, CPU {run.cpu:.1f}s) "
                    f"{ctx.n_ticks / run.seconds:>10,.0f} ticks/s  peak RSS {run.rss_mb:,.0f} MB"
                )

    finish(ctx, names, args, keep)


def finish(ctx: Context, names: list[str], args: argparse.Namespace, keep: bool) -> None:
    """Agreement of every run with the first tickcast run, the report, the exit status."""
    reference = load_bars(next(r.output for r in ctx.runs if r.name == "tickcast"))
    symbols = None
    if args.sample:
        every = sorted(reference.index.get_level_values(0).unique())
        step = max(1, len(every) // args.sample)
        symbols = every[::step][: args.sample]
    agreements = [compare(r.name, reference, load_bars(r.output), symbols) for r in ctx.runs]
    report(ctx, names, agreements, args)
    bad = [a for a in agreements if not a.ok(args.tolerance)]
    if not keep:
        shutil.rmtree(ctx.work, ignore_errors=True)
    if bad:
        for a in bad:
            log(f"DISAGREES: {a}")
        raise SystemExit(1)
    print(f"\nall {len(agreements)} runs agree with tickcast within {args.tolerance:g}")


if __name__ == "__main__":
    main()
