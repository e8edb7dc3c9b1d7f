"""Replay throughput of a sparse history (one symbol, hourly candles over two years) next to a
dense one (20 symbols × 24 h of 1-minute candles from the simulator), in the same run.

A replay's cost must grow with its rows, not with the event-time span they cover: before
issue 15 the model stage evaluated every 5-minute boundary of event time between two
hourly labels, and bar closing built every empty minute between two far-apart ticks.

Both datasets are replayed from JSONL files by `tickcast.app.backfill.run_replay` (the code
behind `tickcast replay`) into a fresh chdb database, with the model stage on (baseline
predictions, calibration windows); the median of `--runs` runs is printed with records/s.

    python bench/sparse_replay.py [--days 730] [--ticks-per-hour 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataflows.simulator import SimConfig, write_files  # noqa: E402
from tickcast.app.backfill import run_replay  # noqa: E402
from tickcast.settings import load_settings  # noqa: E402
from tickcast.store import Store  # noqa: E402

START = 1_700_000_000_000 // 3_600_000 * 3_600_000
HOUR = 3_600_000


def write_sparse(out: Path, *, days: float, ticks_per_hour: float, seed: int = 0) -> int:
    """One symbol: an hourly candle per hour (ingested 1 s after its close) and Poisson ticks."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    hours = int(days * 24)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    lines = []
    for h in range(hours):
        o = float(close[h - 1] if h else close[0])  # plain floats: orjson does not take numpy scalars
        c = float(close[h])
        hi, lo = max(o, c) * (1 + abs(rng.normal(0, 0.002))), min(o, c) * (1 - abs(rng.normal(0, 0.002)))
        t = START + h * HOUR
        lines.append(
            {
                "symbol": "BTCUSDT",
                "interval": "1h",
                "open_time": t,
                "close_time": t + HOUR,
                "open": round(o, 2),
                "high": round(hi, 2),
                "low": round(lo, 2),
                "close": round(c, 2),
                "volume": round(float(rng.uniform(10, 100)), 4),
                "ingest_ts": t + HOUR + 1_000,
            }
        )
    (out / "candles.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    n_ticks = rng.poisson(ticks_per_hour * hours)
    ts = np.sort(rng.integers(START, START + hours * HOUR, n_ticks))
    ticks = [
        {
            "symbol": "BTCUSDT",
            "ts": int(t),
            "score": round(float(s), 4),
            "provider": "newsapi",
            "id": f"n{i}",
            "ingest_ts": int(t) + int(d),
        }
        for i, (t, s, d) in enumerate(zip(ts, rng.uniform(-1, 1, n_ticks), rng.integers(0, 1_500, n_ticks)))
    ]
    (out / "ticks.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ticks))
    return len(lines) + len(ticks)


def replay_once(data: Path, store: Store, models: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (every thread of the process: the flow, chdb's inserts) of one replay."""
    settings = load_settings(MODEL_STORE_DIR=str(models), TICKCAST_LOG_LEVEL="WARNING")
    started, cpu = time.perf_counter(), time.process_time()
    summary = run_replay(settings, inputs=[data], store=store, progress=False)
    return time.perf_counter() - started, time.process_time() - cpu, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=730.0)
    ap.add_argument("--ticks-per-hour", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tickcast-sparse-") as tmp:
        work = Path(tmp)
        cases = {
            "sparse: 1 symbol, hourly candles": (
                work / "sparse",
                write_sparse(work / "sparse", days=args.days, ticks_per_hour=args.ticks_per_hour),
            ),
        }
        counts = write_files(SimConfig(symbols=20, hours=24, seed=7), work / "dense")
        cases["dense: 20 symbols × 24 h, 1m candles"] = (work / "dense", counts["ticks"] + counts["candles"])
        results = {}
        for name, (data, records) in cases.items():
            times, cpus = [], []
            for run in range(args.runs):
                store = Store(f"chdb://{work / 'chdb'}", database=f"r{len(results)}_{run}")
                store.migrate()
                seconds, cpu, summary = replay_once(data, store, work / "models")
                times.append(seconds)
                cpus.append(cpu)
                print(f"  {name}, run {run + 1}: {seconds:.1f} s ({cpu:.1f} s CPU) — {summary}", flush=True)
            results[name] = (records, statistics.median(times), statistics.median(cpus))
        # a shared, noisy box: CPU seconds beside wall seconds, and the ratio of the same run
        print(
            f"\n| case | records | event-time span | median s ({args.runs} runs) | CPU s | records/s | records/CPU s |"
        )
        print("|---|---:|---|---:|---:|---:|---:|")
        spans = {next(iter(results)): f"{args.days:g} days", list(results)[1]: "24 h"}
        for name, (records, seconds, cpu) in results.items():
            print(
                f"| {name} | {records:,} | {spans[name]} | {seconds:.1f} | {cpu:.1f} | "
                f"{records / seconds:,.0f} | {records / cpu:,.0f} |"
            )
        (sparse_n, sparse_s, sparse_c), (dense_n, dense_s, dense_c) = results.values()
        print(
            f"\nsparse/dense throughput ratio: {(sparse_n / sparse_s) / (dense_n / dense_s):.2f} wall, "
            f"{(sparse_n / sparse_c) / (dense_n / dense_c):.2f} CPU"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
