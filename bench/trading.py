"""Trading stage costs, as same-run A/B ratios (the machine is shared and noisy).

Parts (all by default):

- **inference**: `bench/inference.py` (1,000-symbol candle bursts, live flow) run alternately
  with TRADING_ENABLED=false and true, `--rounds` times each; medians of p50/p99 and the ratio.
- **replay**: a full-flow file replay (simulator, `--replay-symbols` × `--replay-hours`, with
  inference by the baseline, which trades here: TRADING_TRADE_BASELINE=true) with the stage
  off and on, alternately; median wall time and the ratio. (`bench/sentiment.py` replays ticks
  without the model stage, so its flow has no trading stage at all: nothing to compare there.)
- **critical-path**: the inference burst in this process, timing when the trading stage runs
  relative to the predictions' publication (its live work is deferred to the activation after
  them): the part of the stage's time that lands before the predictions, and its total time.
- **backtest**: `tickcast backtest` from stored rows over `--days` × `--symbols` 1-minute
  candles (synthetic candles, ATR and predictions written straight into a fresh store), with
  its throughput.

    python bench/trading.py [--part inference|replay|backtest] [--rounds 3] [--days 30] [--symbols 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
START = 1_763_683_200_000
MIN = 60_000


def run_inference(trading: bool) -> tuple[float, float]:
    env = {**os.environ, "TRADING_ENABLED": "true" if trading else "false", "TICKCAST_LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inference.py")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    p50 = float(re.search(r"p50 \| ([\d.]+) ms", out.stdout).group(1))
    p99 = float(re.search(r"p99 \| ([\d.]+) ms", out.stdout).group(1))
    return p50, p99


def inference(rounds: int) -> None:
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for k in range(rounds):
        for trading in (False, True) if k % 2 == 0 else (True, False):
            results[trading].append(run_inference(trading))
            print(f"  round {k}: trading={trading} p50/p99 = {results[trading][-1]}", flush=True)
    off = [statistics.median(x) for x in zip(*results[False])]
    on = [statistics.median(x) for x in zip(*results[True])]
    print(f"\n# inference burst (1,000 symbols), median of {rounds} runs each, alternating")
    print("| | stage off | stage on | on / off |\n|---|---:|---:|---:|")
    print(f"| candle close -> prediction, p50 | {off[0]:.1f} ms | {on[0]:.1f} ms | {on[0] / off[0]:.2f} |")
    print(f"| candle close -> prediction, p99 | {off[1]:.1f} ms | {on[1]:.1f} ms | {on[1] / off[1]:.2f} |")


def critical_path(bursts: int) -> None:
    """Run bench/inference.py here, recording the trading stage's activations and each burst's
    prediction publication on one clock."""
    sys.path.insert(0, str(ROOT / "bench"))
    import inference as inf

    import dataflows.trading.stage as stage

    marks: list[tuple[str, float, float]] = []

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(self, *args):  # noqa: ANN001, ANN202
            t0 = time.perf_counter()
            result = fn(self, *args)
            marks.append((name, t0, time.perf_counter()))
            return result

        return wrapper

    stage.TradingLogic.on_batch = timed("batch", stage.TradingLogic.on_batch)
    stage.TradingLogic.on_notify = timed("notify", stage.TradingLogic.on_notify)
    publish = inf.Recorder.publish_many

    def published(self, events):  # noqa: ANN001, ANN202
        events = list(events)
        if any(e.stream == "predictions" for e in events):
            t = time.perf_counter()
            marks.append(("predictions", t, t))
        return publish(self, events)

    inf.Recorder.publish_many = published
    argv, sys.argv = sys.argv, ["inference.py", "--bursts", str(bursts)]
    try:
        inf.main()
    finally:
        sys.argv = argv
    before, total, after_gap = [], [], []
    pubs = [a for name, a, _ in marks if name == "predictions"]
    for t_pub in pubs[-bursts:]:
        window = [(n, a, b) for n, a, b in marks if n != "predictions" and t_pub - 1.0 < a < t_pub + 1.0]
        before.append(sum(b - a for n, a, b in window if b <= t_pub) * 1000)
        total.append(sum(b - a for n, a, b in window) * 1000)
        later = [a for n, a, b in window if n == "notify" and a >= t_pub]
        after_gap.append((min(later) - t_pub) * 1000 if later else float("nan"))
    print(f"\n# trading stage vs the predictions of {bursts} 1,000-symbol bursts (medians)")
    print("| | ms |\n|---|---:|")
    print(f"| stage time before the predictions are published | {statistics.median(before):.2f} |")
    print(f"| stage time per burst, total | {statistics.median(total):.2f} |")
    print(f"| the trading work starts after the publication by | {statistics.median(after_gap):.1f} |")


def replay(rounds: int, symbols: int, hours: float) -> None:
    from bytewax.testing import run_main

    from dataflows.signals import FlowOptions, build_flow
    from dataflows.simulator import SimConfig, write_files
    from dataflows.sources import FileReplaySource
    from tickcast.settings import load_settings
    from tickcast.store import Store

    work = Path(tempfile.mkdtemp(prefix="tickcast-bench-trading-"))
    write_files(SimConfig(symbols=symbols, hours=hours, seed=4, start_ms=START), work / "sim")
    settings = load_settings(
        MODEL_STORE_DIR=str(work / "models"), TRADING_TRADE_BASELINE=True, TRADING_ENTRY_THRESHOLD=0.52
    )
    store = Store(f"chdb://{work / 'ch'}")
    times: dict[bool, list[float]] = {False: [], True: []}
    fills = 0
    for k in range(rounds + 1):
        for trading in (False, True) if k % 2 == 0 else (True, False):
            store.database = f"r{k}{int(trading)}"
            store.migrate()
            flow = build_flow(
                settings,
                # 5,000: larger batches hit the model stage's calibration cost of issue 15 item 3
                [FileReplaySource([work / "sim"], batch_size=5_000)],
                store_factory=lambda: store,
                options=FlowOptions(live=False, publish_events=False, with_trading=trading),
            )
            t0 = time.perf_counter()
            run_main(flow)
            elapsed = time.perf_counter() - t0
            if k:  # the first round warms numba and the caches
                times[trading].append(elapsed)
            if trading:
                fills = store.count("fills")
            print(f"  round {k}: trading={trading} {elapsed:.2f} s", flush=True)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"\n# full-flow file replay, {symbols} symbols x {hours:g} h ({fills} fills), median of {rounds}")
    print("| | stage off | stage on | on / off |\n|---|---:|---:|---:|")
    print(f"| replay wall time | {off:.2f} s | {on:.2f} s | {on / off:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


def synthetic_store(url: str, days: int, symbols: int) -> int:
    """Stored candles, features (atr_14) and predictions of `symbols` x `days` of 1-minute candles."""
    from tickcast.store import Store

    store = Store(url)
    store.migrate()
    rng = np.random.default_rng(7)
    n = days * 1440
    close_times = START + MIN * (1 + np.arange(n, dtype=np.int64))
    for i in range(symbols):
        r = rng.normal(0, 0.001, n)
        close = 100 * np.exp(np.cumsum(r))
        open_ = np.concatenate([[100.0], close[:-1]])
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0005, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0005, n)))
        symbol = f"S{i:03d}USDT"
        sym = pa.array([symbol] * n)
        candles = pa.table(
            {
                "symbol": sym,
                "interval": pa.array(["1m"] * n),
                "open_time": close_times - MIN,
                "close_time": close_times,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": np.ones(n),
                "ingest_ts": close_times,
            }
        )
        store.insert_pieces("candles", [candles])
        feats = {name: np.full(n, np.nan) for name in ("ret_1", "ret_5", "ret_15", "rv_30", "rsi_14", "vol_z_30")}
        feats |= {f: np.full(n, np.nan) for f in ("sent_score", "sent_cnt", "sent_pos_ratio", "sent_d1", "sent_d5")}
        feats |= {f: np.full(n, np.nan) for f in ("sent_vol_30", "sent_ema_5m", "sent_ema_15m", "sent_ema_60m")}
        store.insert_pieces(
            "features",
            [
                pa.table(
                    {
                        "symbol": sym,
                        "interval": pa.array(["1m"] * n),
                        "close_time": close_times,
                        "close": close,
                        "atr_14": np.full(n, 0.0015),
                        "hl_range": (high - low) / close,
                        "sent_composite": np.full(n, np.nan),
                        "join_status": pa.array(["ok"] * n),
                        **feats,
                    }
                )
            ],
        )
        prob = np.clip(0.5 + 0.1 * np.tanh(rng.normal(0, 1, n)), 0.01, 0.99)
        store.insert_pieces(
            "predictions",
            [
                pa.table(
                    {
                        "symbol": sym,
                        "interval": pa.array(["1m"] * n),
                        "close_time": close_times,
                        "horizon": np.ones(n, np.uint16),
                        "model_version": pa.array(["m20251121T000000Z-bench"] * n),
                        "prob": prob,
                        "fallback_reason": pa.array([""] * n),
                        "latency_ms": np.zeros(n),
                    }
                )
            ],
        )
    store.close()
    return n * symbols


def backtest(days: int, symbols: int) -> None:
    from tickcast.app.backtest import render, run_backtest
    from tickcast.settings import load_settings
    from tickcast.store import Store

    work = Path(tempfile.mkdtemp(prefix="tickcast-bench-backtest-"))
    url = f"chdb://{work / 'ch'}"
    t0 = time.perf_counter()
    rows = synthetic_store(url, days, symbols)
    print(f"stored {rows:,} candles (+ features, predictions) in {time.perf_counter() - t0:.1f} s", flush=True)
    settings = load_settings(TICKCAST_CLICKHOUSE_URL=url, MODEL_STORE_DIR=str(work / "models"))
    doc = run_backtest(settings, store=Store(url), with_ablation=False, progress=True, say=print)
    print(render(doc).split("per symbol")[0])
    t = doc["throughput"]
    print(f"\n# tickcast backtest from stored rows: {days} days x {symbols} symbols x 1m")
    print(f"| candles | {t['candles']:,} |\n| wall time | {t['seconds']:.1f} s |")
    print(f"| throughput | {t['candles_per_s']:,.0f} candles/s |")
    # A restart without a recovery store rebuilds the book from these rows (live_book): its cost
    # is the start-up delay of `tickcast up` / `tickcast flow` over this much history.
    from tickcast.app.backtest import live_book

    t0, c0 = time.perf_counter(), time.process_time()
    book = live_book(settings, Store(url), account="backtest")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert book is not None
    stored = Store(url).scalar(
        "SELECT argMax(equity, ts) FROM {db}.equity FINAL WHERE account = 'backtest' AND symbol = ''"
    )
    print(f"| restart: the book rebuilt from the stored rows | {wall:.1f} s ({cpu:.1f} s CPU) |")
    print(f"| rebuilt equity / stored equity | {book.portfolio.equity():,.2f} / {float(stored):,.2f} |")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("inference", "critical-path", "replay", "backtest"), action="append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replay-symbols", type=int, default=20)
    parser.add_argument("--replay-hours", type=float, default=24.0)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--symbols", type=int, default=100)
    args = parser.parse_args()
    parts = args.part or ["critical-path", "inference", "replay", "backtest"]
    if "critical-path" in parts:
        critical_path(15)
    if "backtest" in parts:
        backtest(args.days, args.symbols)
    if "replay" in parts:
        replay(args.rounds, args.replay_symbols, args.replay_hours)
    if "inference" in parts:
        inference(args.rounds)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
