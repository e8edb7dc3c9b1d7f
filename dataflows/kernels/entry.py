"""Calling a kernel straight through its compiled entry point.

Numba's dispatcher works out the type of every argument on every call to pick the compiled
version: ~20-60 ns an argument, ~1 µs for the 23 arrays and ints of `close_through`, per
symbol and candle burst on the live path. A call site whose argument types cannot change
(arrays its state made with fixed dtypes, scalars it converted) resolves the compiled version
after its first call through the dispatcher (`resolve`) and calls it directly from then on;
the same machine code runs either way, so results are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import typeof


def resolve(kernel: Any, args: tuple[Any, ...], scalars: tuple[type, ...] = (int, float)) -> Callable[..., Any]:
    """The compiled entry point `kernel` (a dispatcher just called with `args`) runs for the
    types of `args`, or `kernel` itself when there is none (JIT disabled, the dispatcher
    matched the call by a conversion) or when an argument is neither an array nor exactly one
    of `scalars`. The caller calls the result only with arguments of the same types: the entry
    point converts its arguments without the dispatcher's checks."""
    if not all(type(a) is np.ndarray or type(a) in scalars for a in args):
        return kernel
    try:
        return kernel.overloads[tuple(typeof(a) for a in args)].entry_point
    except (AttributeError, KeyError, ValueError):
        return kernel
