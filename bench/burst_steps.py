"""Where a live candle burst's time goes, step by step (issue 21 part 1).

Runs `bench/inference.py` (the real live flow on chdb with a promoted model; its own table is
printed too) with each flow step's activation timed: the wait from the hand-over to the decode
step, the decode step, the 16 shard activations, the model stage's first activation (the one
that predicts) and the event sink. Prints the median per burst over the measured bursts, so
the step that grows with the symbol count shows:

    python bench/burst_steps.py --symbols 1000 [--bursts 8] [--warmup 10]
    python bench/burst_steps.py --symbols 10000 --bursts 5

Steps run one after the other on the flow thread (one worker), so they add up to most of the
candle close -> prediction latency; the rest is Bytewax moving items between them. The last
column is the time cyclic garbage collections took inside those steps (already part of them).
"""

from __future__ import annotations

import argparse
import gc
import queue
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

STEPS = ("decode", "shard", "model", "events")
_HANDED_OVER = "handed over"
_COLLECTION = "of which gc"  # cyclic garbage collections inside the steps counted


def _timed(events: list[tuple[str, float, float]], cls: Any, name: str, label: str) -> None:
    method = getattr(cls, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            events.append((label, start, time.perf_counter()))

    setattr(cls, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    events: list[tuple[str, float, float]] = []
    from dataflows import decode, model_stage, sinks, symbol_logic

    _timed(events, decode.DecodeLogic, "on_batch", "decode")
    _timed(events, symbol_logic.ShardLogic, "on_batch", "shard")
    _timed(events, model_stage.ModelLogic, "on_batch", "model")
    _timed(events, sinks._EventPartition, "write_batch", "events")
    put = queue.Queue.put

    def marked_put(self: queue.Queue, item: Any, *a: Any, **kw: Any) -> None:
        # the burst: one hand-over of a candle and a tick per symbol (bench/inference.py's `put`)
        if (
            isinstance(item, list)
            and len(item) >= 2 * args.symbols
            and type(item[0]) is tuple
            and item[0][0] == "bench"
        ):
            now = time.perf_counter()
            events.append((_HANDED_OVER, now, now))
        put(self, item, *a, **kw)

    queue.Queue.put = marked_put  # type: ignore[method-assign]
    collecting: list[float] = []

    def collections(phase: str, info: dict[str, int]) -> None:
        # every cyclic collection, as an event: the ones inside the counted steps are latency
        if phase == "start":
            collecting[:] = [time.perf_counter()]
        elif collecting:
            events.append((_COLLECTION, collecting[0], time.perf_counter()))

    gc.callbacks.append(collections)
    import inference

    sys.argv = [
        "inference.py",
        "--symbols",
        str(args.symbols),
        "--bursts",
        str(args.bursts),
        "--warmup",
        str(args.warmup),
    ]
    inference.main()
    starts = [start for label, start, _ in events if label == _HANDED_OVER][-args.bursts :]
    per_step: dict[str, list[float]] = defaultdict(list)
    for n, t0 in enumerate(starts):
        t1 = starts[n + 1] if n + 1 < len(starts) else float("inf")
        mine = [(label, s, e) for label, s, e in events if t0 <= s < t1 and label != _HANDED_OVER]
        first_decode = min((s for label, s, _ in mine if label == "decode"), default=None)
        if first_decode is not None:
            per_step["wait"].append((first_decode - t0) * 1000)
        # Up to the predictions: the shards before the model stage's first activation (the one
        # that predicts), that activation, and the event sink's first write after it (it
        # publishes them); the deferred side work and evaluations after them are not counted.
        spent: Counter[str] = Counter()
        models = [(s, e) for label, s, e in mine if label == "model"]
        predicted = models[0] if models else (t1, t1)
        published = next(((s, e) for label, s, e in mine if label == "events" and s >= predicted[1]), None)
        counted: list[tuple[float, float]] = []
        for label, s, e in mine:
            if label in ("decode", "shard") and s < predicted[0]:
                spent[label] += (e - s) * 1000
                counted.append((s, e))
        spent["model"] = (predicted[1] - predicted[0]) * 1000 if models else 0.0
        spent["events"] = (published[1] - published[0]) * 1000 if published else 0.0
        counted += [predicted] + ([published] if published else [])
        for label in STEPS:
            per_step[label].append(spent[label])
        # collections that ran inside the counted steps (part of their times above): with 10,000
        # symbols these grew faster than the symbol count (tickcast/gc_tuning.py, idle collections)
        per_step[_COLLECTION].append(
            sum((e - s) * 1000 for label, s, e in mine if label == _COLLECTION and any(a <= s < b for a, b in counted))
        )
    print(f"\n# burst steps: {args.symbols} symbols, medians over {len(starts)} bursts (ms per burst)")
    print("| wait | " + " | ".join(STEPS) + f" | {_COLLECTION} |\n|" + "---:|" * (len(STEPS) + 2))
    print("| " + " | ".join(f"{statistics.median(per_step[s]):.1f}" for s in ("wait", *STEPS, _COLLECTION)) + " |")


if __name__ == "__main__":
    main()
