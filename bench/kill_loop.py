"""A Kafka replay over several partitions, killed with SIGKILL again and again and resumed
from its recovery store, against the same replay run without interruption.

Every table must be equal row for row (calibration_windows and drift_events included;
`predictions.latency_ms` is operational and left out). Prints the figures.

    python bench/kill_loop.py [--symbols 40] [--hours 24] [--long-days 2] [--partitions 4] [--kills 20] [--batch 2000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _broker import tansu  # noqa: E402

from tests.differential import harness  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=40)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--long-days", type=float, default=2.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--batch", type=int, default=2_000, help="TICKCAST_REPLAY_BATCH (small: many epochs to kill in)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (stores, logs, dumps)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tickcast-kill-") as tmp, tansu() as broker:
        work = args.keep or Path(tmp)
        n = harness.write_dataset(work / "data", symbols=args.symbols, hours=args.hours, long_days=args.long_days)
        harness.train_model(work / "models")
        topics = harness.produce_dataset(broker, work / "data", partitions=args.partitions, suffix=uuid.uuid4().hex[:8])
        env = harness.environment(
            work / "models",
            TICKCAST_KAFKA_BOOTSTRAP=broker,
            TICKCAST_REPLAY_BATCH=args.batch,
            TICKCAST_SNAPSHOT_SECONDS=0.5,
            **topics,
        )
        print(
            f"{n:,} records ({args.symbols} symbols × {args.hours} h + 1 × {args.long_days} d), "
            f"{args.partitions} partitions, replay batch {args.batch:,}",
            flush=True,
        )

        clean = harness.Job(
            "uninterrupted", harness.replay_command(work / "clean", kafka=True), env, work / "clean.log"
        )
        clean.start().wait()
        print(f"uninterrupted replay: {clean.seconds:.1f} s", flush=True)

        started = time.monotonic()
        figures = harness.kill_loop(
            harness.replay_command(work / "killed", kafka=True, recovery=work / "recovery"),
            env,
            work / "killed.log",
            work / "recovery",
            kills=args.kills,
            seed=args.seed,
            epochs=1,
            extra_s=0.5,
        )
        print(
            f"killed replay: {figures.kills} SIGKILLs over {figures.runs} runs, {time.monotonic() - started:.1f} s; "
            f"kill after start: median {statistics.median(figures.kill_after_s):.1f} s "
            f"(min {min(figures.kill_after_s):.1f}, max {max(figures.kill_after_s):.1f})",
            flush=True,
        )
        last = re.findall(r"replayed ([\d,]+) records", (work / "killed.log").read_text())[-1]
        print(f"the last run read {last} records of {n:,}: the killed runs had committed the rest", flush=True)
        reference = harness.load_tables(harness.dump_tables(work / "clean", work / "dump-clean"))
        killed = harness.load_tables(harness.dump_tables(work / "killed", work / "dump-killed"))
        diff = harness.differences(reference, killed)
        rows = ", ".join(f"{t}={len(df):,}" for t, df in reference.items() if t != "rejected_reasons")
        print(f"rows: {rows}")
        if figures.kills < args.kills:
            print(f"only {figures.kills} kills: the replay finished first (use more data or a smaller --batch)")
        if diff:
            for table, what in diff.items():
                print(f"DIFFERENT {table}: {what}")
            return 1
        print(f"every table equal row for row after {figures.kills} kills")
        return 0


if __name__ == "__main__":
    sys.exit(main())
