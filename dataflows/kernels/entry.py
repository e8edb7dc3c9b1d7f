"""Calling a kernel straight through its compiled entry point.

Numba's dispatcher works out the type of every argument on every call to pick the compiled
version: ~20-60 ns an argument, ~1 µs for the 23 arrays and ints of `close_through`, per
symbol and candle burst on the live path. A call site whose argument types cannot change
(arrays its state made with fixed dtypes, scalars it converted) resolves the compiled version
after its first call through the dispatcher (`resolve`) and calls it directly from then on;
the same machine code runs either way, so results are bit-identical.

`resolve` runs once per state, so once per symbol: a replay of 1,000 symbols resolves 1,000
times. Numba's `typeof` takes ~15 µs an array (~350 µs for `close_through`'s arguments, 9 % of
a 400k-tick flat replay), so the answer is kept per kernel and argument *fingerprint* — the
C-computed type key the dispatcher itself matches calls with (~0.3 µs an argument) — and every
state after the first gets it from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import _dispatcher, typeof

_INT64 = (-(2**63), 2**63)
# (kernel, argument fingerprints) -> what `resolve` found; kernels are module-level, few
_RESOLVED: dict[tuple[Any, tuple[bytes, ...]], Callable[..., Any]] = {}


def resolve(kernel: Any, args: tuple[Any, ...], scalars: tuple[type, ...] = (int, float)) -> Callable[..., Any]:
    """The compiled entry point `kernel` (a dispatcher just called with `args`) runs for the
    types of `args`, or `kernel` itself when there is none (JIT disabled, the dispatcher
    matched the call by a conversion) or when an argument is neither an array nor exactly one
    of `scalars`. The caller calls the result only with arguments of the same types: the entry
    point converts its arguments without the dispatcher's checks."""
    if not all(type(a) is np.ndarray or type(a) in scalars for a in args):
        return kernel
    # A Python int's fingerprint does not say int64 or uint64 (typeof decides by value): ints
    # outside int64 are resolved by typeof, uncached.
    # Only entry points are kept: a kernel not yet compiled for these types may be later.
    if not all(type(a) is not int or _INT64[0] <= a < _INT64[1] for a in args):
        return _entry_point(kernel, args) or kernel
    try:
        key = (kernel, tuple(_dispatcher.compute_fingerprint(a) for a in args))
    except (TypeError, ValueError, NotImplementedError):  # an argument Numba cannot fingerprint
        return _entry_point(kernel, args) or kernel
    found = _RESOLVED.get(key)
    if found is None:
        found = _entry_point(kernel, args)
        if found is None:
            return kernel
        _RESOLVED[key] = found
    return found


def _entry_point(kernel: Any, args: tuple[Any, ...]) -> Callable[..., Any] | None:
    try:
        return kernel.overloads[tuple(typeof(a) for a in args)].entry_point
    except (AttributeError, KeyError, ValueError):
        return None
