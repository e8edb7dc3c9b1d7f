"""The tick id hash: a stable signed 64-bit hash of each id's UTF-8 bytes (FNV-1a 64, then
the splitmix64 finalizer). The sentiment state deduplicates by it and the columnar decoder
computes it straight from Arrow's string buffers, so it is one function both import: two
hashes of one id would let a duplicate through."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numba import njit

__all__ = ["hash_id", "hash_ids", "string_hash"]


@njit(cache=True)
def _fnv1a_splitmix(offsets, data):  # pragma: no cover - compiled
    """FNV-1a 64 of each string's bytes, then the splitmix64 finalizer, as int64."""
    out = np.empty(offsets.size - 1, np.uint64)
    for i in range(offsets.size - 1):
        h = np.uint64(0xCBF29CE484222325)
        for k in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
        out[i] = h
    return out.view(np.int64)


def string_hash(arr: pa.Array) -> np.ndarray:
    """`_fnv1a_splitmix` over a (large_)string array's own buffers."""
    n = len(arr)
    if n == 0:
        return np.empty(0, np.int64)
    if arr.null_count:
        raise ValueError(f"ids to hash must all be strings. Got {arr.null_count} null(s) instead.")
    _, offsets_buf, data_buf = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(offsets_buf, width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    return _fnv1a_splitmix(offsets, data)


def hash_ids(ids: Sequence[str]) -> np.ndarray:
    """Stable signed 64-bit hash of each id's UTF-8 bytes (the same as `FastTicks.id_hash`)."""
    return string_hash(pa.array(ids, pa.string()))


def hash_id(s: str) -> int:
    return int(hash_ids([s])[0])
