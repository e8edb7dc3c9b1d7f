"""The embedded loss window: POST, SIGKILL after a delay, count what the store kept — prints a markdown table.

    python bench/durability.py [--records 240] [--delays 0,100,300,500,600,700,800,1000,1500]
                               [--reps 3] [--modes queued,stored] [--cold]

For every mode (TICKCAST_INGEST_ACK) × delay × repetition: start `tickcast up --no-simulator`
on a fresh chdb directory, POST a warm-up request and wait until it is stored (the first
records of a process load the Numba kernels; `--cold` skips this), POST `--records` ticks in
one request, wait `delay` ms after the answer, SIGKILL the process, then count the request's
ticks in `sentiment_ticks` from a new process (a restart of the store). Each row of the table
gives the ticks kept (min / median / max over the repetitions) and the POST's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
KEY = "tickcast-dev-key"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stored(url: str, ids: list[str]) -> int:
    code = (
        "import json,sys; from tickcast.store import Store; s=Store(sys.argv[1]); "
        "print(json.dumps([r['id'] for r in s.rows('SELECT id FROM {db}.sentiment_ticks FINAL')]))"
    )
    out = subprocess.run([sys.executable, "-c", code, url], cwd=ROOT, capture_output=True, check=True, text=True)
    return len(set(json.loads(out.stdout.strip().splitlines()[-1])) & set(ids))


def one_run(workdir: Path, mode: str, delay_ms: int, records: int, run: int, cold: bool) -> tuple[int, float, int]:
    """(ticks kept, POST latency ms, HTTP status)."""
    port = _port()
    url = f"chdb://{workdir / f'{mode}-{delay_ms}-{run}'}"
    env = {**os.environ, "TICKCAST_INGEST_ACK": mode, "TICKCAST_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tickcast.app.cli", "up", "--no-simulator", "--port", str(port)]
    cmd += ["--store", url, "--model-dir", str(workdir / "models")]
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.time() + 120
            while True:
                try:
                    if client.get("/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("tickcast up did not become healthy")
                time.sleep(0.2)

            def ticks_of(ids: list[str]) -> list[dict]:
                now = int(time.time() * 1000)
                return [{"symbol": "BTCUSDT", "ts": now, "score": 0.1, "provider": "bench", "id": i} for i in ids]

            if not cold:
                warm = [f"warm{run}-{i}" for i in range(records)]
                client.post("/api/sentiment/ticks", json={"ticks": ticks_of(warm)}, headers={"X-API-Key": KEY})
                time.sleep(2.0)  # stored by then in either mode (the window is < 1 s once warm)
            ids = [f"k{run}-{i}" for i in range(records)]
            ticks = ticks_of(ids)
            t = time.perf_counter()
            r = client.post("/api/sentiment/ticks", json={"ticks": ticks}, headers={"X-API-Key": KEY})
            latency = (time.perf_counter() - t) * 1000
            time.sleep(delay_ms / 1000)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return _stored(url, ids), latency, r.status_code


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=240)
    ap.add_argument("--delays", default="0,100,300,500,600,700,800,1000,1500", help="ms after the 202, comma-separated")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="queued,stored")
    ap.add_argument("--cold", action="store_true", help="no warm-up request: the measured one is the process's first")
    args = ap.parse_args(argv)
    delays = [int(d) for d in args.delays.split(",")]
    modes = args.modes.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="tickcast-bench-durability-"))
    results: dict[tuple[str, int], list[tuple[int, float, int]]] = {}
    try:
        for rep in range(args.reps):  # repetitions outermost: machine noise spreads over every cell
            for mode in modes:
                for delay in delays:
                    results.setdefault((mode, delay), []).append(
                        one_run(workdir, mode, delay, args.records, rep, args.cold)
                    )
                    kept = results[(mode, delay)][-1][0]
                    print(f"  {mode:6} kill {delay:5} ms after the answer: kept {kept}/{args.records}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    start = "the process's first request (cold)" if args.cold else "after a warm-up request"
    print(
        f"\nEmbedded loss window ({os.cpu_count()} CPUs): {args.records} ticks in one POST ({start}), SIGKILL after "
        f"the answer, {args.reps} runs per cell (kept: min / median / max)\n"
    )
    print("| TICKCAST_INGEST_ACK | kill after the answer | ticks kept | POST latency (median) | answer |")
    print("|---|---|---|---|---|")
    for mode in modes:
        for delay in delays:
            cell = results[(mode, delay)]
            kept = [k for k, _, _ in cell]
            answers = sorted({s for _, _, s in cell})
            print(
                f"| {mode} | {delay} ms | {min(kept)} / {statistics.median(kept):g} / {max(kept)} of {args.records} "
                f"| {statistics.median(lat for _, lat, _ in cell):.0f} ms | {', '.join(map(str, answers))} |"
            )


if __name__ == "__main__":
    main()
