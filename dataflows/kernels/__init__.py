"""The flow's Numba kernels. Importing the package sets Numba's CPU target up without its BLAS
probe (a 0.3-0.6 s import of scipy no kernel needs; see numba_target.py)."""

from dataflows.kernels.numba_target import import_arraymath_without_blas_probe

import_arraymath_without_blas_probe()
