"""The sentiment job in Pathway (one peer of `bench/peers.py`), with its free features only.

Idiomatic Pathway: the JSON Lines connector with a schema (nested `meta` as `pw.Json`), the
job as relational steps, the per-symbol sequential part as one reducer + UDF:

1. late ticks filtered by an expression;
2. dedup: `groupby(symbol, id)` with a `sorted_tuple` of the copies, a UDF keeping those that
   come more than the dedup window after the last kept one (ingest order), then `flatten`;
3. entry bar m, trust weight and each tick's EMA contribution w·e^{−(m−ts)/W} as columns;
4. `windowby` tumbling 1-minute windows of the entry time, per symbol (`instance`):
   count, Σw, Σw·score, positives of the bar's own ticks and the EMA sums of every tick entering;
5. per symbol: `groupby(symbol)` + `sorted_tuple` of the bars and a UDF that walks them in
   time order (`peers_job.scan_bars`: empty bars, ffill, d1/d5/vol_30, EMA recursion), then
   `flatten` into one row per bar, written with the JSON Lines output connector.

The input is read in static mode (the whole file as one commit): a replay of a file, as the
other implementations do. In streaming mode each commit would re-run step 5 for every
symbol it touches.

    python bench/peers_pathway.py --input ticks.jsonl --out bars.jsonl   # PATHWAY_THREADS=2 for two
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pathway as pw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers_job as job  # noqa: E402


class TickSchema(pw.Schema):
    """The tick payload of docs/design.md §3 as the simulator writes it (every field present)."""

    symbol: str
    ts: int
    score: float
    polarity: int
    provider: str
    tick_id: str  # the payload's "id": `id` is every Pathway table's row-key column
    ingest_ts: int
    meta: pw.Json


def build(input_path: Path, out_path: Path, p: job.JobParams) -> None:
    ticks = pw.io.jsonlines.read(str(input_path), schema=TickSchema, mode="static", json_field_paths={"tick_id": "/id"})
    fresh = ticks.filter(pw.this.ingest_ts - pw.this.ts <= p.max_latency_ms)

    def keep_first(copies: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Any, ...], ...]:
        # copies sorted by ingest_ts: keep one unless a kept copy is at most the window older
        kept: list[tuple[Any, ...]] = []
        for c in copies:
            if not kept or c[0] - kept[-1][0] > p.dedup_window_ms:
                kept.append(c)
        return tuple(kept)

    copies = fresh.groupby(pw.this.symbol, pw.this.tick_id).reduce(
        pw.this.symbol,
        kept=pw.apply(
            keep_first,
            pw.reducers.sorted_tuple(
                pw.make_tuple(pw.this.ingest_ts, pw.this.ts, pw.this.score, pw.this.polarity, pw.this.provider)
            ),
        ),
    )
    accepted = copies.flatten(pw.this.kept).select(
        pw.this.symbol,
        ingest_ts=pw.declare_type(int, pw.this.kept[0]),
        ts=pw.declare_type(int, pw.this.kept[1]),
        score=pw.declare_type(float, pw.this.kept[2]),
        polarity=pw.declare_type(int, pw.this.kept[3]),
        provider=pw.declare_type(str, pw.this.kept[4]),
    )
    step = p.step_ms
    by_ts = (pw.this.ts // step + 1) * step
    # ceil((ingest − grace) / step)·step, numerator positive for any real epoch time
    by_ingest = (pw.this.ingest_ts - p.grace_ms + step - 1) // step * step
    entered = accepted.select(
        *pw.this,
        m=pw.if_else(by_ts > by_ingest, by_ts, by_ingest),
        w=pw.apply_with_type(p.weight, float, pw.this.provider),
    )
    entered = entered.select(
        *pw.this,
        in_bar=pw.if_else(pw.this.ts >= pw.this.m - step, 1, 0),
        pos=pw.if_else(pw.this.polarity == 1, 1, 0),
        **{
            f"c{k}": pw.this.w * pw.apply_with_type(math.exp, float, (pw.this.ts - pw.this.m) / win)
            for k, win in enumerate(p.windows_ms)
        },
    )
    n = len(p.windows_ms)
    bars = entered.windowby(
        pw.this.m - 1, window=pw.temporal.tumbling(duration=step, origin=0), instance=pw.this.symbol
    ).reduce(
        symbol=pw.this._pw_instance,
        bar_end=pw.this._pw_window_end,
        cnt=pw.reducers.sum(pw.this.in_bar),
        sw=pw.reducers.sum(pw.this.w * pw.this.in_bar),
        sws=pw.reducers.sum(pw.this.w * pw.this.score * pw.this.in_bar),
        npos=pw.reducers.sum(pw.this.pos * pw.this.in_bar),
        max_ingest=pw.reducers.max(pw.this.ingest_ts),
        **{f"num{k}": pw.reducers.sum(pw.this[f"c{k}"] * pw.this.score) for k in range(n)},
        **{f"den{k}": pw.reducers.sum(pw.this[f"c{k}"]) for k in range(n)},
    )
    cols = ["bar_end", "cnt", "sw", "sws", "npos", "max_ingest"] + [f"num{k}" for k in range(n)]
    cols += [f"den{k}" for k in range(n)]

    def series(bar_rows: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Any, ...], ...]:
        rows = job.scan_bars(bar_rows, p)
        return tuple(tuple(r[f] for f in ("bar_end", *job.FIELDS)) for r in rows)

    per_symbol = bars.groupby(pw.this.symbol).reduce(
        pw.this.symbol,
        rows=pw.apply(series, pw.reducers.sorted_tuple(pw.make_tuple(*(pw.this[c] for c in cols)))),
    )
    flat = per_symbol.flatten(pw.this.rows)
    out = flat.select(
        pw.this.symbol,
        bar_end=pw.declare_type(int, pw.this.rows[0]),
        **{
            name: pw.declare_type(int if name == "sent_cnt" else float | None, pw.this.rows[i + 1])
            for i, name in enumerate(job.FIELDS)
        },
    )
    pw.io.jsonlines.write(out, str(out_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default=job.JobParams().to_json(), help="JobParams as JSON")
    args = parser.parse_args()
    args.out.unlink(missing_ok=True)
    started = time.perf_counter()
    build(args.input, args.out, job.JobParams.from_json(args.params))
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    print(orjson.dumps({"seconds": time.perf_counter() - started}).decode())


if __name__ == "__main__":
    main()
