"""The shard step on live candle bursts, in-process (issue 21 part 1).

What bench/inference.py hands the flow each minute, through the real decode step: the
minute's ticks (one per symbol, ingested at T - 29 s), then the burst (one candle per symbol
closing at T and one tick per symbol ingested after T + grace). This times the 16 shard
activations of each burst (`ShardLogic.on_batch`, live config: side work deferred, then done
by `on_notify` outside the timing, as the flow does after the model stage) and prints the
median and min ms per burst.

    python bench/shard_burst.py --symbols 1000 --bursts 15 [--profile]

For an A/B, run it with PYTHONPATH on each tree (e.g. `git archive <commit> | tar -x -C DIR`),
alternating.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from inference import GRACE, START, tick  # noqa: E402 - the bench's own record shapes

from dataflows.decode import DecodeConfig, DecodeLogic  # noqa: E402
from dataflows.items import ShardWork  # noqa: E402
from dataflows.signals import FlowOptions, symbol_config  # noqa: E402
from dataflows.simulator import flat_candle  # noqa: E402
from dataflows.symbol_logic import ShardLogic  # noqa: E402
from tickcast.gc_tuning import tune_gc  # noqa: E402
from tickcast.settings import load_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=25, help="candles per symbol before measuring")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed shard steps")
    args = parser.parse_args()
    config = symbol_config(load_settings(FEATURE_JOIN_GRACE_MS=GRACE), FlowOptions(live=True))
    decode = DecodeLogic(DecodeConfig(wall_clock=True, recovery=False), None)
    shards: dict[str, ShardLogic] = {}
    symbols = [f"S{i:04d}USDT" for i in range(args.symbols)]
    rng = np.random.default_rng(2)
    prices = {s: 100 + 10 * rng.random() for s in symbols}
    profile = cProfile.Profile() if args.profile else None
    tune_gc()

    def run(records: list[dict[str, Any]], timed: bool) -> float:
        items, _ = decode.on_batch([[("bench", r, r["ingest_ts"]) for r in records]])
        took = 0.0
        for item in items:
            if not isinstance(item, ShardWork):
                continue
            logic = shards.get(item.shard) or shards.setdefault(item.shard, ShardLogic(config, None))
            if profile is not None and timed:
                profile.enable()
            start = time.perf_counter()
            logic.on_batch([item.work])
            took += time.perf_counter() - start
            if profile is not None and timed:
                profile.disable()
        for logic in shards.values():  # the deferred side work, as the flow runs it after the model stage
            if logic.later:
                logic.on_notify()
        return took * 1000

    times = []
    for k in range(args.warmup + args.bursts):
        close = START + (k + 1) * 60_000
        run([tick(s, close - 30_000, close - 29_000, float(rng.uniform(-1, 1))) for s in symbols], False)
        records = []
        for s in symbols:
            prices[s] *= float(np.exp(rng.normal(0, 0.001)))
            records.append(flat_candle(s, close, prices[s]))
        records += [tick(s, close + 2_500, close + GRACE + 1, 0.1) for s in symbols]
        ms = run(records, k >= args.warmup)
        if k >= args.warmup:
            times.append(ms)
    print(f"{args.symbols} symbols: shard steps per burst median {np.median(times):.2f} ms, min {min(times):.2f} ms")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
