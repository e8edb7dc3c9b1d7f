"""The in-process queue's poll: how long a record handed over waits before the flow has it,
and what an idle flow costs polling (issue 21, live latency).

HTTP ingest and the simulator hand records to the flow through a queue (`QueueSource`); an
empty queue is looked at every `_QUEUE_POLL`. This puts one record at a time at random
3–12 ms intervals into a one-step flow and prints the wait's p50/p90, then the process CPU of
the idle flow over a few seconds. `--poll-ms` overrides the poll to compare settings in one
run, e.g. `--poll-ms 5 1`.

    python bench/queue_poll.py [--poll-ms 5 1] [--records 300] [--idle-s 5]
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta


def measure(poll_ms: float | None, records: int, idle_s: float) -> str:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main

    from dataflows import sources

    if poll_ms is not None:
        sources._QUEUE_POLL = timedelta(milliseconds=poll_ms)
    inbox: queue.Queue = queue.Queue()
    waits: list[float] = []
    flow = Dataflow("queue_poll")
    stream = op.input("in", flow, sources.QueueSource(inbox))
    op.inspect("seen", stream, lambda _step, item: waits.append(time.perf_counter() - item[1][0][1]))
    threading.Thread(
        target=run_main, args=(flow,), kwargs={"epoch_interval": timedelta(seconds=10)}, daemon=True
    ).start()
    time.sleep(1.0)
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(idle_s)
    idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
    for _ in range(records):
        time.sleep(random.uniform(0.003, 0.012))
        inbox.put([("bench", time.perf_counter(), 0)])
    time.sleep(0.2)
    p50 = statistics.median(waits) * 1000
    p90 = statistics.quantiles(waits, n=10)[-1] * 1000
    poll = sources._QUEUE_POLL.total_seconds() * 1000
    return f"| {poll:g} ms | {p50:.2f} ms | {p90:.2f} ms | {100 * idle:.2f} % |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--poll-ms", type=float, nargs="*", default=[], help="polls to compare (default: the code's)")
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)  # a child process's poll
    args = parser.parse_args()
    if args.one is not None or not args.poll_ms:
        row = measure(None if args.one is None or args.one < 0 else args.one, args.records, args.idle_s)
        print(row, flush=True)
        os._exit(0)  # the flow thread is still polling: no teardown
    print("| poll | put -> flow p50 | p90 | idle flow CPU (of a core) |\n|---|---:|---:|---:|")
    for poll in args.poll_ms:  # each in a process of its own: one flow, one poll
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(poll),
            "--records",
            str(args.records),
            "--idle-s",
            str(args.idle_s),
        ]
        print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
