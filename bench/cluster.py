"""Throughput of `tickcast flow` as a 2-process Bytewax cluster against 1 process, on the
same input topics (4 partitions each) of a local tansu broker, with a chdb store.

Produces `--symbols` × `--hours` of simulated ticks and candles (the simulator's own
records, nested `meta` included) once, then for each configuration starts the processes
(`tickcast flow -r DIR [-i k -a …]`, a fresh store and recovery directory each), and reads
their `/metrics`:

- flow rate: records accepted per second of processing, from the first accepted tick to
  99 % of the input's ticks (start-up and the last idle release left out);
- end to end: the same records over the time until every row is written (the store sink
  of a chdb store is on process 0; with a ClickHouse server it is spread, see
  dataflows/placement.py);
- CPU cores busy: user + system time of the flow processes (all their threads: Bytewax,
  librdkafka, chdb's engine) per second of flowing. The ratio cannot exceed
  (cores of the machine) / (cores one process already keeps busy).

    python bench/cluster.py [--symbols 64] [--hours 12] [--repeat 1]

The machine is shared and noisy: one run each by default; the ratio is of the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _broker import tansu  # noqa: E402

from dataflows.simulator import SimConfig, generate_labeled  # noqa: E402
from tests.cluster.harness import FlowCluster, flow_env, make_topics, produce  # noqa: E402


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes and their threads so far (/proc, clock ticks)."""
    import os

    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def measure(
    broker: str, topics: dict[str, str], processes: int, ticks: int, records: int
) -> tuple[float, float, float]:
    """(records/s while flowing, records/s end to end, CPU cores busy while flowing)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-cluster-{processes}-"))
    env = flow_env(
        broker,
        topics,
        TICKCAST_LOG_LEVEL="WARNING",
        TICKCAST_SNAPSHOT_SECONDS="5",
        TICKCAST_KAFKA_IDLE_RELEASE_MS="500",
    )
    env.pop("TICKCAST_WRITE_FLUSH_MS")  # the default (500 ms)
    cluster = FlowCluster(workdir, env, processes=processes)
    try:
        cluster.start()
        cluster.wait_for("sentiment_ingest_total", 1, timeout=300)
        pids = [p.pid for p in cluster.procs]
        t0, cpu0 = time.monotonic(), cpu_seconds(pids)
        cluster.wait_for("sentiment_ingest_total", 0.99 * ticks, timeout=900)
        t1, cpu1 = time.monotonic(), cpu_seconds(pids)
        cluster.wait_quiet(quiet_s=2.0, timeout=900)
        t2 = time.monotonic() - 2.0
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0.99 * records / (t1 - t0), records / (t2 - t0), (cpu1 - cpu0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=64)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    cfg = SimConfig(symbols=args.symbols, hours=args.hours, seed=7, start_ms=1_763_683_200_000)
    labeled = list(generate_labeled(cfg))
    records = [r for r, _ in labeled]
    ticks = sum(1 for r, bad in labeled if bad is None and "score" in r)
    print(f"{len(records):,} records ({ticks:,} ticks), {args.symbols} symbols × {args.hours:g} h, 4 partitions")
    with tansu() as broker:
        topics = make_topics(broker, 4)
        produce(broker, topics, records)
        results: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
        for _ in range(args.repeat):
            for processes in (1, 2):
                flow_rate, e2e, cores = measure(broker, topics, processes, ticks, len(records))
                results[processes].append((flow_rate, e2e, cores))
                print(
                    f"  {processes} process(es): {flow_rate:10,.0f} records/s flowing, {e2e:10,.0f} end to end, "
                    f"{cores:.2f} CPU cores busy"
                )
    one = [statistics.median(x) for x in zip(*results[1], strict=True)]
    two = [statistics.median(x) for x in zip(*results[2], strict=True)]
    print(f"ratio 2 processes / 1 process: flowing {two[0] / one[0]:.2f}x, end to end {two[1] / one[1]:.2f}x")


if __name__ == "__main__":
    main()
