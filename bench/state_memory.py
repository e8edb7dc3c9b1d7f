"""Per-symbol state memory: how much the shards hold for N symbols, and that it stays flat
as ticks keep coming (issue 21: "state memory for 10,000 symbols printed and flat in ticks").

The decode and shard steps of the live flow (`DecodeLogic`, `ShardLogic`, the live
configuration of `tickcast up`), in this process without Bytewax, are fed hour after hour
of event time: every minute each symbol gets `--ticks-per-minute` ticks (random providers,
ids, scores; the dedup window sees each id once) and its 1-minute candle. After each hour
the shards' state is measured two ways:

- pickled: the bytes of the shards' state as a Bytewax snapshot would hold it (numpy
  arrays as raw bytes; what a recovery store writes per epoch);
- RSS: the resident memory of this process (decode and shard state, the interpreter,
  Numba; the activations' outputs dropped).

Records go in `--minutes-per-batch` minutes at a time (batch boundaries do not change the
state, docs/design.md; bigger batches only make the bench faster).

    python bench/state_memory.py [--symbols 10000] [--hours 6] [--ticks-per-minute 2]

The state is bounded by design (docs/design.md §4: a 256-bar ring per symbol, the dedup
memory of the last 120 s of ingest time, at most `max_pending` pending ticks; the ring is
allocated whole), so the pickled state must not grow with the ticks at all, and the RSS
growth per 1,000,000 ticks over the previous hour must stay near zero.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dataflows.decode import DecodeConfig, DecodeLogic  # noqa: E402
from dataflows.items import ShardWork  # noqa: E402
from dataflows.signals import FlowOptions, symbol_config  # noqa: E402
from dataflows.symbol_logic import ShardLogic, ShardState  # noqa: E402
from tickcast.settings import load_settings  # noqa: E402

MINUTE = 60_000
PROVIDERS = ("newsapi", "cryptopanic", "twitter", "reddit")


def minute_records(symbols: list[str], close_time: int, per_minute: int, rng: np.random.Generator) -> list[bytes]:
    """One minute of every symbol's records as JSON lines, in ingest order: its ticks spread
    over the minute, then its candle (ingested 100 ms after the close)."""
    open_time = close_time - MINUTE
    n = len(symbols) * per_minute
    offsets = np.sort(rng.integers(0, MINUTE - 3_000, n))
    which = rng.integers(0, len(symbols), n)
    scores = rng.uniform(-1, 1, n).round(4)
    providers = rng.integers(0, len(PROVIDERS), n)
    lines = [
        orjson.dumps(
            {
                "symbol": symbols[w],
                "ts": open_time + int(o),
                "ingest_ts": open_time + int(o) + 1_500,
                "score": float(s),
                "provider": PROVIDERS[p],
                "id": f"{symbols[w]}-{open_time + int(o)}-{k}",
                "meta": {"lang": "en", "source": {"kind": "feed", "rank": int(p)}},
            }
        )
        for k, (o, w, s, p) in enumerate(zip(offsets.tolist(), which.tolist(), scores.tolist(), providers.tolist()))
    ]
    closes = 100.0 + rng.normal(0, 1, len(symbols))
    lines += [
        orjson.dumps(
            {
                "symbol": sym,
                "interval": "1m",
                "open_time": open_time,
                "close_time": close_time,
                "open": float(c),
                "high": float(c) + 0.5,
                "low": float(c) - 0.5,
                "close": float(c),
                "volume": 10.0,
                "ingest_ts": close_time + 100,
            }
        )
        for sym, c in zip(symbols, closes.tolist())
    ]
    return lines


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--ticks-per-minute", type=int, default=2, help="per symbol")
    parser.add_argument("--minutes-per-batch", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings()
    decode = DecodeLogic(DecodeConfig(wall_clock=False, recovery=False), None)
    config = symbol_config(settings, FlowOptions(live=True))
    shards: dict[str, ShardLogic] = {}
    symbols = [f"S{i:05d}USDT" for i in range(args.symbols)]
    rng = np.random.default_rng(args.seed)
    start = 1_763_683_200_000
    ticks_so_far = 0
    previous: tuple[int, float] | None = None
    print(
        f"# state memory: {args.symbols} symbols, {args.ticks_per_minute} tick(s) per symbol per minute, "
        f"a 1-minute candle each; measured after each hour of event time"
    )
    print(
        "| hour | ticks so far | pickled state (MB) | RSS (MB) | bytes/symbol | RSS growth per 1M ticks (MB) | s/hour |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for hour in range(args.hours):
        began = time.perf_counter()
        for first in range(0, 60, args.minutes_per_batch):
            lines = []
            for minute in range(first, min(60, first + args.minutes_per_batch)):
                close_time = start + (hour * 60 + minute + 1) * MINUTE
                lines += minute_records(symbols, close_time, args.ticks_per_minute, rng)
                ticks_so_far += len(symbols) * args.ticks_per_minute
            items, _ = decode.on_batch([[("bench", line, None) for line in lines]])
            for item in items:
                if isinstance(item, ShardWork):
                    logic = shards.get(item[0])
                    if logic is None:
                        logic = shards[item[0]] = ShardLogic(config, None)
                    logic.on_batch([item[1]])
            for logic in shards.values():  # the deferred side work, as the flow's next activation does
                logic.on_notify()
        spent = time.perf_counter() - began
        del items
        gc.collect()
        rss = rss_mb()
        pickled = (
            sum(
                len(pickle.dumps(ShardState({n: s.state for n, s in lg.symbols.items()}, lg.later), protocol=5))
                for lg in shards.values()
            )
            / 1e6
        )
        growth = "–" if previous is None else f"{(rss - previous[1]) / ((ticks_so_far - previous[0]) / 1e6):+.2f}"
        print(
            f"| {hour + 1} | {ticks_so_far:,} | {pickled:,.1f} | {rss:,.1f} | "
            f"{pickled * 1e6 / args.symbols:,.0f} | {growth} | {spent:.1f} |",
            flush=True,
        )
        previous = (ticks_so_far, rss)


if __name__ == "__main__":
    main()
