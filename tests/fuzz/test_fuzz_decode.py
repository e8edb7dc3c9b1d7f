"""Runs the atheris harness (tests/fuzz/fuzz_decode.py) for a bounded number of inputs.

The seed corpus is written here from the simulator's own output (ticks with nested meta,
candles, a control record) plus hand-picked faults; libFuzzer mutates from there. A crash
(any exception, or a disagreement between the decoders) fails the test with the input.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from itertools import islice
from pathlib import Path

import orjson

from dataflows.simulator import SimConfig, generate

HARNESS = Path(__file__).with_name("fuzz_decode.py")
ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("TICKCAST_FUZZ_RUNS", "3000"))
SEP = b"\xfe"


def seeds() -> list[bytes]:
    records = list(islice(generate(SimConfig(symbols=3, hours=1.0, seed=3, ticks_per_minute=10.0)), 400))
    ticks = [orjson.dumps(r) for r in records if "score" in r][:24]
    candles = [orjson.dumps(r) for r in records if "open_time" in r][:6]
    faults = [
        candles[0].replace(b'"1m"', b"{}"),
        ticks[0][:-1] + b',"symbol":"ETHUSDT"}',
        ticks[1].replace(b'"meta":{', b'"meta":{"x":' + b"[" * 70 + b"]" * 70 + b","),
        ticks[2].replace(b'"score":', b'"score":"0.5","s":'),
        b'{"_control":"enable_provider","provider":"twitter"}',
        b"",
        b"null",
    ]
    headers = [b"\0\0\0\0", b"\xff\x01\x81\x00", b"\x0f\x04\x01\x01"]
    out = []
    for k in range(12):
        values = [*ticks[2 * k : 2 * k + 2], candles[k % 6], faults[k % 7]]
        out.append(headers[k % 3] + SEP.join(values))
    return out


def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k, seed in enumerate(seeds()):
        (corpus / f"seed{k}").write_bytes(seed)
    # libFuzzer's RSS limit reads the process's peak RSS (getrusage), and Linux carries a
    # parent's peak over into a child it starts: the harness starts with this test process's
    # peak (~2 GB after the suite before it). Its own budget is 2 GB above that.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    proc = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={RUNS}",
            f"-rss_limit_mb={inherited_mb + 2048}",
            "-max_len=4096",
            "-max_total_time=240",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert "Done" in tail and f"{RUNS} runs" in tail, tail
