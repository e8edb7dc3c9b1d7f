"""A folder replay against a one-file replay of the same records (issue 21, part 2).

Users replay folders: the simulator's output (`tickcast replay --input /tmp/sim`: ticks.jsonl
and candles.jsonl), a file a day of JSONL or Parquet exports. Several files are merged by
ingest time (dataflows/file_lines.py), so a folder must take the columnar path a single file
takes. This bench replays the simulator's ticks as they are, split into `--files` files (a
day each: contiguous spans of ingest time), as JSONL and as Parquet, and the simulator's
folder (ticks + candles, with `--with-candles`), each run `tickcast replay --input ... --no-model
--no-progress` in a process of its own with a fresh chdb store, interleaved over `--rounds`.

It prints per input: records, the replay's own time (the summary line's "in X s"), records/s,
process wall, CPU, peak RSS, and the folder's time and RSS over the one file's, measured in the
same run; and it checks that the folder stored the rows the file stored (the summary's counts).

    python bench/folder_replay.py --sim DIR [--files 4] [--rounds 3] [--with-candles]

DIR: `tickcast simulate --symbols 200 --hours 24 --seed 1 --duplicate-rate 0.01 --late-rate 0.005
--out DIR` (the peers' input).
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import replay_cmd, run_process  # noqa: E402 - the peers bench's process runner


def run_replay(inputs: Path, store: Path) -> dict[str, float | str]:
    """`tickcast replay` of `inputs` into a fresh store: its own seconds, wall, CPU, peak RSS, rows."""
    cmd = replay_cmd(store, inputs)
    # cwd: the work dir, so that a developer's .env does not change the replays' settings
    wall, cpu, rss_mb, stdout = run_process(cmd, cwd=store.parent)
    summary = stdout.strip().splitlines()[-1]
    found = re.search(r"replayed ([\d,]+) records.* in ([\d.]+)s .*rows: (.*)$", summary)
    if not found:
        raise RuntimeError(f"no summary line in {stdout[-500:]!r}")
    return {
        "records": float(found.group(1).replace(",", "")),
        "seconds": float(found.group(2)),
        "wall": wall,
        "cpu": cpu,
        "rss_mb": rss_mb,
        "rows": found.group(3),
    }


def split_jsonl(source: Path, out: Path, files: int) -> Path:
    """`source`'s lines in `files` files of contiguous lines (a file a day)."""
    out.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as fh:
        n = sum(1 for _ in fh)
    with source.open("rb") as fh:
        for k in range(files):
            with (out / f"day{k}.jsonl").open("wb") as day:
                day.writelines(itertools.islice(fh, n * (k + 1) // files - n * k // files))
    return out


def to_parquet(source: Path, out: Path, files: int) -> Path:
    """`source`'s records as Parquet (nested meta a struct column), in `files` files; in a
    process of its own, so that this one stays small (a replay's peak RSS counts the memory
    of the process it was started from, until its exec)."""
    subprocess.run([sys.executable, __file__, "--to-parquet", str(source), str(out), str(files)], check=True)
    return out if files > 1 else out / "ticks.parquet"


def write_parquet(source: Path, out: Path, files: int) -> None:
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([orjson.loads(line) for line in source.read_bytes().splitlines() if line.strip()])
    out.mkdir(parents=True, exist_ok=True)
    cuts = [table.num_rows * k // files for k in range(files + 1)]
    for k in range(files):
        part = table.slice(cuts[k], cuts[k + 1] - cuts[k])
        pq.write_table(part, out / (f"day{k}.parquet" if files > 1 else "ticks.parquet"), row_group_size=100_000)


def main() -> None:
    if sys.argv[1:2] == ["--to-parquet"]:
        write_parquet(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", type=Path, required=True, help="a `tickcast simulate` output folder")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--with-candles", action="store_true", help="also the simulator's folder as it is")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tickcast-folder-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ticks = args.sim / "ticks.jsonl"
    inputs: dict[str, Path] = {
        "JSONL, 1 file": ticks,
        f"JSONL, {args.files} files": split_jsonl(ticks, work / "jsonl-days", args.files),
        "Parquet, 1 file": to_parquet(ticks, work / "parquet-one", 1),
        f"Parquet, {args.files} files": to_parquet(ticks, work / "parquet-days", args.files),
    }
    if args.with_candles:
        inputs["simulator folder (ticks + candles)"] = args.sim
    pairs = {f"JSONL, {args.files} files": "JSONL, 1 file", f"Parquet, {args.files} files": "Parquet, 1 file"}
    runs: dict[str, list[dict[str, float | str]]] = {name: [] for name in inputs}
    for rnd in range(args.rounds):
        order = list(inputs) if rnd % 2 == 0 else list(reversed(inputs))
        for name in order:
            result = run_replay(inputs[name], work / "store")
            runs[name].append(result)
            print(f"round {rnd + 1} {name:<36} in {result['seconds']:.1f} s, wall {result['wall']:.1f} s, "
                  f"CPU {result['cpu']:.1f} s, peak RSS {result['rss_mb']:,.0f} MB", flush=True)  # fmt: skip
    print(f"\n# folder vs one file: the simulator's ticks ({args.sim}), {args.rounds} rounds, medians\n")
    print(
        "| input | records | replay (s) | records/s | wall (s) | CPU (s) | peak RSS (MB) | time ÷ one file's | RSS ÷ one file's |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = {
        n: {k: statistics.median(float(r[k]) for r in rs) for k in ("seconds", "wall", "cpu", "rss_mb")}
        for n, rs in runs.items()
    }
    for name, rs in runs.items():
        m = med[name]
        base = pairs.get(name)
        ratio = f"{m['seconds'] / med[base]['seconds']:.2f}" if base else "-"
        rss = f"{m['rss_mb'] / med[base]['rss_mb']:.2f}" if base else "-"
        records = float(rs[0]["records"])
        print(f"| {name} | {records:,.0f} | {m['seconds']:.2f} | {records / m['seconds']:,.0f} | {m['wall']:.2f} "
              f"| {m['cpu']:.2f} | {m['rss_mb']:,.0f} | {ratio} | {rss} |")  # fmt: skip
    same = all(runs[a][0]["rows"] == runs[b][0]["rows"] for a, b in pairs.items())
    print(f"\nrows stored by each folder = rows stored by its one file: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
