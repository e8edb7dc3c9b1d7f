"""Numba's CPU target, set up without its BLAS probe (imported by `dataflows.kernels`).

The first kernel a process runs (a call, or a load from the on-disk cache) sets up Numba's
CPU target, and that imports `numba.np.arraymath`, which probes for a BLAS by importing
`scipy.linalg` at module level: 0.3-0.6 s of single-threaded imports, on every replay's and
every live run's start, for a library no kernel of the flow uses. The probe's answer is used
by one thing only, the inner product of `np.correlate`/`np.convolve` in jitted code (BLAS or
a plain loop); `np.dot` and `np.linalg` check for BLAS again on their own, so they still work.
So the probe is answered "no BLAS" here, once, when `dataflows.kernels` is imported: every
flow imports it (decode, the shard step) before any kernel runs. A process that runs a kernel
without importing it (a unit test of one module) pays the probe, nothing more.

When `scipy.linalg` is already imported (a process that trains models), the probe is free
and runs as Numba wrote it. A Numba without these names is left alone.
"""

from __future__ import annotations

import sys


def _no_blas() -> None:
    raise ImportError("tickcast: Numba's BLAS probe skipped (dataflows/kernels/numba_target.py)")


def import_arraymath_without_blas_probe() -> None:
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import numba.np.linalg as linalg
    except ImportError:  # pragma: no cover - a Numba laid out differently
        return
    probe = getattr(linalg, "ensure_blas", None)
    if probe is None:  # pragma: no cover - a Numba laid out differently
        return
    linalg.ensure_blas = _no_blas  # arraymath binds it at import and probes once
    try:
        import numba.np.arraymath  # noqa: F401 - imported for its side effect
    finally:
        linalg.ensure_blas = probe  # np.dot and np.linalg check with the real one
