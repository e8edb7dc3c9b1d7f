"""Numba's CPU target without its BLAS probe (dataflows/kernels/numba_target.py): the flow's
kernels run without importing scipy.linalg, and jitted code that does use BLAS still works
and gives numpy's answers. In a fresh process: the probe runs once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import numpy as np
from numba import njit
import dataflows.kernels.market as k

times, vals, count = np.zeros((64, 2), np.int64), np.full((5, 64), np.nan), np.zeros(1, np.int64)
status = k.push_candle(times, vals, count, 0, 60_000, 1.0, 2.0, 0.5, 1.5, 10.0, 60_000, np.zeros(k.N_FEATURES), np.zeros(1))
after_kernel = "scipy.linalg" in sys.modules

a, b = np.linspace(-1, 1, 50), np.cos(np.arange(7.0))
correlate = njit(lambda x, y: np.correlate(x, y))(a, b)  # the inner product the probe chose for
dot = njit(lambda x, y: np.dot(x, y))(a, a)  # checks for BLAS on its own: imports scipy.linalg
print(json.dumps({
    "status": int(status), "after_kernel": after_kernel, "after_dot": "scipy.linalg" in sys.modules,
    "correlate": (correlate - np.correlate(a, b)).tolist(), "dot": dot - float(np.dot(a, a)),
}))
"""


def test_kernels_run_without_scipy_linalg_and_jitted_blas_still_works() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["status"] >= 0
    assert got["after_kernel"] is False  # the probe would have imported it with the kernel's target
    assert got["after_dot"] is True
    assert max(abs(d) for d in got["correlate"]) < 1e-12
    assert abs(got["dot"]) < 1e-9
