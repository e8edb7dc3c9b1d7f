"""How the burst latency grows with the symbol count: `bench/inference.py` at several sizes,
each in its own process (one chdb path per process), interleaved over `--runs` rounds.

    python bench/inference_scaling.py [--sizes 100,1000,10000] [--runs 3] [--bursts 5] [--warmup 10]

Prints p50/p99 per size (medians over the runs) and the cost per 1,000 symbols: a column
that stays flat means linear growth; one that climbs with the size is the superlinearity
issue 21 asked about (it was the bench's own fixed wait, see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"\| (candle close -> prediction row|the minute's \d+ ticks -> every symbol's view), (p50|p99) \| ([\d.]+) ms \|"
)


def one_run(symbols: int, bursts: int, warmup: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "inference.py"),
            "--symbols",
            str(symbols),
            "--bursts",
            str(bursts),
            "--warmup",
            str(warmup),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {("ticks" if what.startswith("the minute") else "burst", q): float(v) for what, q, v in ROW.findall(out)}
    return {"p50": found[("burst", "p50")], "p99": found[("burst", "p99")], "ticks": found[("ticks", "p50")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for r in range(args.runs):
        for n in sizes:  # interleaved: each round measures every size within minutes
            results[n].append(one_run(n, args.bursts, args.warmup))
            print(f"round {r + 1}: {n} symbols {results[n][-1]}", flush=True)
    print(f"\n# burst latency by symbol count: medians of {args.runs} runs ({args.bursts} bursts each)")
    print(
        "| symbols | burst p50 | burst p99 | p50 per 1,000 symbols | minute's ticks p50 |\n|---:|---:|---:|---:|---:|"
    )
    for n in sizes:
        med = {k: statistics.median(x[k] for x in results[n]) for k in ("p50", "p99", "ticks")}
        print(
            f"| {n:,} | {med['p50']:.1f} ms | {med['p99']:.1f} ms | {med['p50'] * 1000 / n:.1f} ms | {med['ticks']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
