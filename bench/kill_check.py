"""Issue 15 probe: SIGKILL a Kafka replay early and check, right after each kill, that the
state its recovery store would resume from is consistent with the store and the topics.

After each kill (a fresh process, the killed one is dead so its chdb directory is free):

- the resume epoch R as Bytewax computes it, and the snapshots it would load (< R);
- every tick id in a shard's dedup memory (accepted ticks) must be stored in
  `sentiment_ticks` or wait in the row batcher's snapshot (`shard ahead of store`);
- every symbol's watermark must be reached by the records below the source partitions'
  resume offsets (`shard ahead of source`).

    python bench/kill_check.py [--trials 10] [--kills 2] [--symbols 20] [--hours 6] [--slow]

`--slow` widens the two windows the issue-15 race needs, in the replay processes only (a
wrapper patches them before the CLI runs): the store sink's end-of-epoch flush takes `--flush-s`
(0.3) s longer (a busy store: the steps upstream have snapshotted the epoch, the frontier waits), and
each Kafka partition delivers nothing for its first 1.5 s (a busy host's slow consumer start:
a resumed run's first epochs carry no records).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESUME_SQL = """
WITH max_ex AS (SELECT ex_num, worker_count, resume_epoch FROM exs WHERE ex_num = (SELECT MAX(ex_num) FROM exs)),
default_progress AS (SELECT ex_num, 0 AS worker_index, resume_epoch AS worker_frontier FROM max_ex),
explicit_progress AS (
  SELECT ex_num, worker_index, worker_frontier FROM fronts WHERE ex_num = (SELECT MAX(ex_num) FROM exs)),
max_progress AS (
  SELECT ex_num, worker_index, MAX(worker_frontier) AS worker_frontier
  FROM (SELECT * FROM explicit_progress UNION SELECT * FROM default_progress) GROUP BY ex_num, worker_index)
SELECT ex_num + 1, MIN(worker_frontier) FROM max_progress
"""


def loaded_snapshots(recovery: Path) -> tuple[int, dict[tuple[str, str], tuple[int, Any]]]:
    """(resume epoch, {(step_id, key): (snap_epoch, state)}) as Bytewax would load them."""
    with sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True) as con:
        row = con.execute(RESUME_SQL).fetchone()
        resume = 1 if row is None or row[1] is None else int(row[1])
        rows = con.execute(
            "WITH m AS (SELECT step_id, state_key, MAX(snap_epoch) AS snap_epoch FROM snaps WHERE snap_epoch < ?1 "
            "GROUP BY step_id, state_key) SELECT step_id, state_key, snap_epoch, ser_change FROM snaps "
            "JOIN m USING (step_id, state_key, snap_epoch)",
            (resume,),
        ).fetchall()
        newest = con.execute("SELECT MAX(snap_epoch) FROM snaps").fetchone()[0]
        commits = con.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()[0]
    out = {}
    for step, key, epoch, ser in rows:
        out[(step, key)] = (epoch, None if ser is None else pickle.loads(ser))
    print(f"  recovery: resume epoch {resume}, newest snapshot epoch {newest}, commit epoch {commits}", flush=True)
    return resume, out


def _piece_ids(piece: Any) -> list[str]:
    import pyarrow as pa

    from tickcast.store import ColumnBlock

    if isinstance(piece, pa.Table):
        return piece.column("id").to_pylist()
    if isinstance(piece, ColumnBlock):
        if "id" in piece.arrays:
            return [str(x) for x in piece.arrays["id"].tolist()]
        return [piece.constants["id"]] * piece.num_rows
    return [row["id"] for row in piece]


def stale_snapshots(recovery: Path, resume: int, before: Path) -> int:
    """Snapshots at epochs >= the resume epoch were written by the killed run past what it
    committed. Remember them (`before`); return how many of the snapshots the resume would
    load now are such leftovers of an earlier run (same step, key, epoch and bytes — or the same
    bytes written again by the later run, which this cannot tell apart)."""
    import hashlib

    with sqlite3.connect(f"file:{recovery / 'part-0.sqlite3'}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT step_id, state_key, snap_epoch, ser_change FROM snaps").fetchall()
    digest = {(s, k, e): hashlib.sha1(b or b"").hexdigest() for s, k, e, b in rows}
    earlier = json.loads(before.read_text()) if before.exists() else []
    newest_below: dict[tuple[str, str], int] = {}
    for s, k, e in digest:
        if e < resume and e > newest_below.get((s, k), -1):
            newest_below[(s, k)] = e
    loaded = {(s, k, e) for (s, k), e in newest_below.items()}
    stale = [x for x in earlier if tuple(x[:3]) in loaded and digest.get(tuple(x[:3])) == x[3]]
    for s, k, e, _ in stale[:10]:
        print(f"  STALE LOAD: {s} {k} epoch {e} was written by an earlier run past its resume point", flush=True)
    ahead = [[s, k, e, h] for (s, k, e), h in digest.items() if e >= resume]
    before.write_text(json.dumps(earlier + ahead))
    print(f"  {len(ahead)} snapshot(s) at epochs >= the resume epoch {resume} (left by the killed run)", flush=True)
    return len(stale)


def check(recovery: Path, store: Path, topic_dump: Path) -> dict[str, Any]:
    """The consistency check (run in a process of its own: it opens the chdb store)."""
    import numpy as np

    from dataflows.kernels.id_hash import hash_ids
    from dataflows.outputs import flat_pieces
    from dataflows.snapshot import thaw
    from tickcast.store import Store

    resume, snaps = loaded_snapshots(recovery)
    steps: dict[str, list[tuple[str, int]]] = {}
    for (step, key), (epoch, _) in sorted(snaps.items()):
        steps.setdefault(step, []).append((key, epoch))
    for step, keys in steps.items():
        print(f"  {step}: {len(keys)} keys, snapshot epochs {sorted({e for _, e in keys})}", flush=True)
    shards = {k: thaw(s) for (step, k), (_, s) in snaps.items() if step.endswith(".symbol_shards") and s is not None}
    sources = {k: s for (step, k), (_, s) in snaps.items() if step.endswith(".input_0")}
    buffered: list[str] = []
    for (step, key), (_, s) in snaps.items():
        if step.endswith(".batch_rows") and key == "sentiment_ticks" and s is not None:
            buf = thaw(s)
            buffered += [i for _, piece in buf.items for p in flat_pieces([piece]) for i in _piece_ids(p)]
    stale = stale_snapshots(recovery, resume, recovery.parent / (recovery.name + "-ahead.json"))
    if not shards:
        print("  no shard state to resume from", flush=True)
        return {"resume": resume, "ahead_of_store": 0, "ahead_of_source": 0, "stale": stale}
    st = Store(f"chdb://{store}")
    stored = [r["id"] for r in st.rows("SELECT id FROM {db}.sentiment_ticks")]
    st.close()
    known = set(hash_ids(stored).tolist()) | set(hash_ids(buffered).tolist() if buffered else [])
    print(f"  store: {len(stored)} tick rows, batcher holds {len(buffered)}", flush=True)
    dump = pickle.loads(topic_dump.read_bytes())
    ahead_store = 0
    ahead_source = 0
    examples = []
    for shard in shards.values():
        for name, sym in shard.symbols.items():
            sent = sym.sentiment
            if sent is not None and len(sent.seen_ids):
                missing = [h for h in sent.seen_ids.tolist() if h not in known]
                if missing:
                    ahead_store += len(missing)
                    examples.append((name, "seen ids not stored", len(missing), len(sent.seen_ids)))
            # the records of this symbol below the resume offsets
            newest = -1
            for (topic, part), recs in dump.items():
                state = sources.get(f"p{part}")
                offset = -2 if state is None else state.get(topic, -2)
                sel = recs["symbol"] == name
                if offset >= 0:
                    sel &= recs["offset"] < offset
                else:
                    sel &= False
                if sel.any():
                    newest = max(newest, int(recs["ingest_ts"][sel].max()))
            if sym.watermark > newest + 1_000:  # (a tick behind the watermark is parked at watermark + 1)
                ahead_source += 1
                examples.append((name, "watermark beyond consumed", sym.watermark, newest))
    print(f"  sources: {sources}", flush=True)
    for ex in examples[:10]:
        print(f"  VIOLATION {ex}", flush=True)
    _ = np
    return {"resume": resume, "ahead_of_store": ahead_store, "ahead_of_source": ahead_source, "stale": stale}


def dump_topics(broker: str, topics: dict[str, str], partitions: int, out: Path) -> None:
    import numpy as np
    import orjson
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker, "group.id": "kill-check", "enable.partition.eof": True})
    result = {}
    for topic in topics.values():
        for part in range(partitions):
            consumer.assign([TopicPartition(topic, part, 0)])
            offsets, symbols, ingest = [], [], []
            while True:
                msgs = consumer.consume(10_000, timeout=2.0)
                if not msgs:
                    break
                eof = False
                for m in msgs:
                    if m.error():
                        eof = True
                        continue
                    rec = orjson.loads(m.value() or b"{}")
                    offsets.append(m.offset())
                    symbols.append(rec["symbol"])
                    ingest.append(rec["ingest_ts"])
                if eof:
                    break
            result[(topic, part)] = {
                "offset": np.array(offsets, np.int64),
                "symbol": np.array(symbols),
                "ingest_ts": np.array(ingest, np.int64),
            }
    consumer.close()
    out.write_bytes(pickle.dumps(result))


def slow_replay(argv: list[str]) -> None:
    """`tickcast replay` with the `--slow` delays (see the module doc)."""
    import runpy

    from dataflows import sinks
    from dataflows.kafka import pair_source

    flush = sinks._StorePartition.snapshot

    def slow_flush(self: Any) -> None:
        time.sleep(float(os.environ.get("KILL_CHECK_FLUSH_S", "0.3")))
        return flush(self)

    init, batch = pair_source._PairPartition.__init__, pair_source._PairPartition.next_batch

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._built_at = time.monotonic()

    def slow_batch(self: Any) -> Any:
        if time.monotonic() - self._built_at < 1.5:
            self._idle = True
            return []
        return batch(self)

    sinks._StorePartition.snapshot = slow_flush  # type: ignore[method-assign]
    pair_source._PairPartition.__init__ = slow_init  # type: ignore[method-assign]
    pair_source._PairPartition.next_batch = slow_batch  # type: ignore[method-assign]
    sys.argv = ["tickcast", *argv]
    runpy.run_module("tickcast.app.cli", run_name="__main__")


def main() -> int:
    if sys.argv[1:2] == ["--as-slow-replay"]:
        slow_replay(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="widen the race windows (see the module doc)")
    parser.add_argument("--flush-s", type=float, default=0.3, help="--slow: the store flush's extra seconds")
    parser.add_argument("--check", nargs=3, metavar=("RECOVERY", "STORE", "DUMP"), help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kills", type=int, default=2, help="kills per trial (each trial starts fresh)")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=1, help="kill once the run committed this many epochs")
    parser.add_argument("--extra", type=float, default=1.0, help="then a random 0..extra seconds")
    parser.add_argument(
        "--late",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="even kills (0, 2, ...) at a random MIN..MAX s after the start instead (records flowing); "
        "odd kills as above (early: in a resumed run's first epochs)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the replay")
    args = parser.parse_args()
    if args.check:
        result = check(Path(args.check[0]), Path(args.check[1]), Path(args.check[2]))
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from _broker import tansu

    from tests.differential import harness

    rng = random.Random(args.seed)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="tickcast-killcheck-") as tmp, tansu() as broker:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        n = harness.write_dataset(work / "data", symbols=args.symbols, hours=args.hours, long_days=1)
        harness.train_model(work / "models")
        topics = harness.produce_dataset(broker, work / "data", partitions=args.partitions, suffix=uuid.uuid4().hex[:8])
        dump_topics(broker, topics, args.partitions, work / "topics.pkl")
        extra = dict(kv.split("=", 1) for kv in args.env)
        env = harness.environment(
            work / "models",
            TICKCAST_KAFKA_BOOTSTRAP=broker,
            TICKCAST_REPLAY_BATCH=args.batch,
            TICKCAST_SNAPSHOT_SECONDS=0.5,
            **topics,
            **extra,
        )
        env["KILL_CHECK_FLUSH_S"] = str(args.flush_s)
        print(f"{n:,} records, {args.partitions} partitions, batch {args.batch}", flush=True)
        for trial in range(args.trials):
            store, recovery = work / f"store-{trial}", work / f"recovery-{trial}"
            cmd = harness.replay_command(store, kafka=True, recovery=recovery)
            if (
                args.slow
            ):  # [python, -m, tickcast.app.cli, replay, ...] -> [python, this file, --as-slow-replay, replay, ...]
                cmd = [cmd[0], __file__, "--as-slow-replay", *cmd[3:]]
            for kill in range(args.kills):
                watch = harness.RunWatch(recovery, need_read=False)  # epochs only, as this check always did
                t0 = time.monotonic()
                with (work / f"run-{trial}.log").open("ab") as fh:
                    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
                    kill_at = None
                    if args.late and kill % 2 == 0:
                        kill_at = t0 + rng.uniform(*args.late)
                    while proc.poll() is None:
                        if kill_at is None and watch.saved(args.epochs):
                            kill_at = time.monotonic() + rng.uniform(0, args.extra)
                        if kill_at is not None and time.monotonic() >= kill_at:
                            os.kill(proc.pid, signal.SIGKILL)
                            proc.wait()
                            break
                        time.sleep(0.01)
                if proc.returncode != -signal.SIGKILL:
                    print(f"trial {trial} run {kill}: finished before the kill ({proc.returncode})", flush=True)
                    break
                print(f"trial {trial} kill {kill} after {time.monotonic() - t0:.2f} s", flush=True)
                out = subprocess.run(
                    [sys.executable, __file__, "--check", str(recovery), str(store), str(work / "topics.pkl")],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    capture_output=True,
                    text=True,
                )
                print(out.stdout, end="", flush=True)
                if out.returncode:
                    print(out.stderr[-3000:], flush=True)
                    return 2
                result = json.loads(out.stdout.split("RESULT ", 1)[1])
                # `stale` alone is a hint, not a finding: a resumed run can write the very same bytes again
                # at the same epoch (the decode state rarely changes)
                if result["ahead_of_store"] or result["ahead_of_source"]:
                    bad += 1
                    print(f"trial {trial} kill {kill}: INCONSISTENT {result}", flush=True)
        print(f"{bad} inconsistent resume points", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
