"""Cost of one calibration-window evaluation (DESIGN §6) — prints a markdown table.

    python bench/calibration.py [--runs 7]

Cases: a 100k-row window evaluated overall only; the production shape of 1000 symbols
× 360 one-minute rows (a 6-hour window, 360k rows) evaluated overall and per symbol;
and ``calibration_report`` alone on 100k rows. Each figure is the median of ``--runs``
timed runs after one warm-up run (which also pays the Numba JIT / cache load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from models.calibration import calibration_report
from models.calibration_window import WindowedCalibration

MIN_MS = 60_000
T0 = 1_763_683_200_000


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _rows(n_symbols: int, per_symbol: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_symbols * per_symbol
    ts = np.repeat(T0 + np.arange(per_symbol, dtype=np.int64) * MIN_MS, n_symbols)
    sym = np.tile(np.arange(n_symbols, dtype=np.int32), per_symbol)
    prob = rng.random(n)
    label = (rng.random(n) < prob).astype(np.int8)
    return ts, sym, prob, label


def _window(ts, sym, prob, label) -> WindowedCalibration:
    w = WindowedCalibration(retention_ms=6 * 3600 * 1000)
    w.add(ts, sym, prob, label)
    return w


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    runs = ap.parse_args(argv).runs
    results = []

    ts, sym, prob, label = _rows(1000, 100)  # 100k rows: 1000 symbols × 100 minutes
    w = _window(ts, sym, prob, label)
    now = int(ts.max())
    ms = _median_ms(lambda: w.evaluate(now, 360 * MIN_MS, per_symbol=False), runs)
    results.append(("window evaluate, overall only", "100,000", ms))

    ts6, sym6, prob6, label6 = _rows(1000, 360)  # 1000 symbols × 6 h of 1-minute rows
    w6 = _window(ts6, sym6, prob6, label6)
    now6 = int(ts6.max())
    ms = _median_ms(lambda: w6.evaluate(now6, 360 * MIN_MS), runs)
    results.append(("window evaluate, overall + 1000 symbols", "360,000", ms))

    ms = _median_ms(lambda: calibration_report(prob, label), runs)
    results.append(("calibration_report alone", "100,000", ms))

    ms = _median_ms(lambda: _window(ts6, sym6, prob6, label6), runs)
    results.append(("window add (one batch, validated)", "360,000", ms))

    print(f"| case | rows | median ms ({runs} runs) |")
    print("|---|---:|---:|")
    for name, rows, ms in results:
        print(f"| {name} | {rows} | {ms:.1f} |")


if __name__ == "__main__":
    main()
