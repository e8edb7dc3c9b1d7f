"""JSONL lines kept as the file's bytes on their way from the file to the decode step.

A replay reads a JSONL file a few MiB at a time (dataflows/file_lines.py); the columnar tick
decoder (dataflows/tick_decode.py) reads newline-joined lines. Cutting each block into one
`bytes` per line, only for the decoder to join them again, cost about a third of a µs a
line, a tenth of a realistic replay. `Lines` keeps the block and where each line starts and
ends instead, and still reads like the list of line bytes it stands for (index, slice,
iterate, compare with a list), so code that takes records one at a time needs no second path.

A replay of several files (a folder: the simulator's ticks.jsonl and candles.jsonl, a file a
day) merges their lines by ingest time; `Lines.take` puts the merged lines in one new block in
that order (one copy of their bytes, in a kernel), so the decode step reads a merged batch as
it reads one file's. As a list of one `bytes` per line, a folder replayed ~0.5 µs a line
slower than the same lines in one file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
from numba import njit

_NEWLINE = 10


@njit(cache=True, nogil=True)
def _gather(src, starts, ends, out):  # pragma: no cover - compiled
    """Lines src[starts[k]:ends[k]] into `out`, in order, one b"\\n" between two."""
    at = 0
    for k in range(starts.size):
        if k:
            out[at] = _NEWLINE
            at += 1
        a, b = starts[k], ends[k]
        out[at : at + b - a] = src[a:b]
        at += b - a


class Lines(Sequence[bytes]):
    """Line k is `blob[starts[k]:ends[k]]` (stripped, never empty, no newline inside)."""

    __slots__ = ("blob", "ends", "starts")

    def __init__(self, blob: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self.blob = blob
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return int(self.starts.size)

    @overload
    def __getitem__(self, k: int) -> bytes: ...
    @overload
    def __getitem__(self, k: slice) -> Lines: ...
    def __getitem__(self, k: int | slice) -> bytes | Lines:
        if isinstance(k, slice):
            return Lines(self.blob, self.starts[k], self.ends[k])
        return self.blob[int(self.starts[k]) : int(self.ends[k])]

    def __iter__(self) -> Iterator[bytes]:
        blob = self.blob
        return (blob[a:b] for a, b in zip(self.starts.tolist(), self.ends.tolist(), strict=True))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lines({list(self)!r})"

    def joined(self) -> bytes:
        """The lines joined with b"\\n": one slice of the block when only single newlines
        separate them (what a writer of JSONL writes), else a join."""
        n = len(self)
        if n == 0:
            return b""
        if n == 1 or bool((self.starts[1:] == self.ends[:-1] + 1).all()):
            lo, hi = int(self.starts[0]), int(self.ends[-1])
            return self.blob if lo == 0 and hi == len(self.blob) else self.blob[lo:hi]
        return b"\n".join(self)

    @classmethod
    def concat(cls, parts: Sequence[Lines]) -> Lines:
        """The parts' lines, in order, over one new block (each part's span copied once)."""
        held = [p for p in parts if len(p)]
        if len(held) == 1:
            return held[0]
        spans, starts, ends = [], [], []
        offset = 0
        for part in held:
            lo, hi = int(part.starts[0]), int(part.ends[-1])
            spans.append(memoryview(part.blob)[lo:hi])  # joined without a copy of its own
            starts.append(part.starts - lo + offset)
            ends.append(part.ends - lo + offset)
            offset += hi - lo + 1  # the b"\n" between spans
        if not spans:
            return cls(b"", np.empty(0, np.int64), np.empty(0, np.int64))
        return cls(b"\n".join(spans), np.concatenate(starts), np.concatenate(ends))

    def take(self, order: np.ndarray) -> Lines:
        """Lines `order` (positions), in that order, over one new block: what a merge of
        several files' lines gives the decoder, which reads a block's lines joined."""
        starts, ends = self.starts[order], self.ends[order]
        sizes = ends - starts
        if not sizes.size:
            return Lines(b"", starts, ends)
        out = np.empty(int(sizes.sum()) + sizes.size - 1, np.uint8)
        _gather(np.frombuffer(self.blob, np.uint8), starts, ends, out)
        ends = np.cumsum(sizes + 1) - 1
        return Lines(out.tobytes(), ends - sizes, ends)
