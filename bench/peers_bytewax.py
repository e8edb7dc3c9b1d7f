"""The sentiment job as a naive per-message Bytewax flow (one peer of `bench/peers.py`).

What a Bytewax user writes first, in the style of bench/sentiment.py's naive flow: the file
source (lines), one item per tick, `key_on` symbol, `stateful_map` with the per-message job
(`peers_job.on_tick`: dedup, late, pending ticks, bar close, EMAs), `flat_map` of the
closed bars, one JSON line per bar into the file sink. One worker (more threads in one
Bytewax process are slower, see docs/benchmarks.md).

    python bench/peers_bytewax.py --input ticks.jsonl --out bars.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers_job as job  # noqa: E402


def build_flow(input_path: Path, out_path: Path, p: job.JobParams) -> Any:
    import bytewax.operators as op
    from bytewax.connectors.files import FileSink, FileSource
    from bytewax.dataflow import Dataflow

    def step(state: dict[str, Any] | None, tick: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if state is None:
            state = job.new_state(p)
        return state, job.on_tick(state, tick, p)

    flow = Dataflow("peers_naive_bytewax")
    lines = op.input("ticks", flow, FileSource(input_path))
    ticks = op.map("decode", lines, orjson.loads)
    keyed = op.key_on("symbol", ticks, lambda t: t["symbol"])
    closed = op.stateful_map("bars", keyed, step)
    bars = op.flat_map_value("each_bar", closed, lambda rows: rows)
    out = op.map("encode", bars, lambda kv: (kv[0], orjson.dumps(job.json_row(kv[0], kv[1])).decode()))
    op.output("bars_out", out, FileSink(out_path))
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default=job.JobParams().to_json(), help="JobParams as JSON")
    args = parser.parse_args()
    from bytewax.testing import run_main

    args.out.unlink(missing_ok=True)
    started = time.perf_counter()
    run_main(build_flow(args.input, args.out, job.JobParams.from_json(args.params)))
    print(orjson.dumps({"seconds": time.perf_counter() - started}).decode())


if __name__ == "__main__":
    main()
