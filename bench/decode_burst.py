"""The decode step on live candle bursts, in-process (issue 21 part 1).

A burst is what HTTP ingest hands the flow at a candle close: one queue item of N candle
dicts and N tick dicts. This times `DecodeLogic.on_batch` on such bursts (GC tuned as the
running system tunes it) and prints the median and p90 ms per burst.

    python bench/decode_burst.py --symbols 1000 --bursts 21
    python bench/decode_burst.py --symbols 1000 --against /tmp/base   # A/B, interleaved

`--against DIR`: a checkout of another commit (e.g. `git archive <commit> | tar -x -C DIR`);
its dataflows/decode.py and dataflows/tick_batches.py are loaded as modules of their own and
timed on the same bursts, alternating which goes first.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from inference import GRACE, tick  # noqa: E402 - the bench's own record shapes

from dataflows import decode  # noqa: E402
from dataflows.simulator import flat_candle  # noqa: E402
from tickcast.gc_tuning import tune_gc  # noqa: E402


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def other_decode(root: Path) -> ModuleType:
    """`root`'s decode module, reading `root`'s tick_batches (the rest is shared)."""
    _load(root / "dataflows" / "tick_batches.py", "base_tick_batches")
    text = (root / "dataflows" / "decode.py").read_text()
    patched = Path("/tmp") / "base_decode_for_bench.py"
    patched.write_text(text.replace("from dataflows.tick_batches import", "from base_tick_batches import"))
    return _load(patched, "base_decode")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=21)
    parser.add_argument("--against", type=Path, help="a checkout of the commit to compare with")
    args = parser.parse_args()
    symbols = [f"S{i:05d}USDT" for i in range(args.symbols)]
    first = (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000

    def burst(k: int) -> list[dict[str, Any]]:
        close = first + k * 60_000
        records = [flat_candle(s, close, 100.0 + k) for s in symbols]
        return records + [tick(s, close + 2_500, close + GRACE + 1, 0.1) for s in symbols]

    modules = {"this": decode} | ({"against": other_decode(args.against)} if args.against else {})
    logics = {n: m.DecodeLogic(m.DecodeConfig(wall_clock=True, recovery=False), None) for n, m in modules.items()}
    tune_gc()
    times: dict[str, list[float]] = {n: [] for n in logics}
    warmup = 3
    for k in range(args.bursts + warmup):
        records = burst(k)
        for name in list(logics)[:: 1 if k % 2 else -1]:
            batch = [[("http", dict(r), r["ingest_ts"]) for r in records]]
            start = time.perf_counter()
            logics[name].on_batch(batch)
            if k >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    for name, ms in times.items():
        print(
            f"{args.symbols} symbols, {name}: decode median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms"
        )


if __name__ == "__main__":
    main()
