"""Labeled predictions of one model version, kept for a sliding calibration window.

Storage is a set of parallel numpy columns used as a FIFO ring: rows are appended at
the tail, rows that fell out of the retention window are released from the head, and
the live rows are moved back to the front only when the tail reaches the end. Unlike a
wrap-around ring the live rows are always one contiguous slice, so evaluation works on
views without concatenating. Capacity doubles on demand up to ``max_rows``; past that
the oldest rows are dropped (counted in ``dropped``) so memory stays bounded.

Retention is measured from the newest ``ts`` seen (event time only moves forward in
the flow): a row with ``ts <= newest − retention_ms`` can no longer fall in a window
ending at or after ``newest`` and is released.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from models import _kernels
from models.calibration import (
    _check_params,
    _check_prob_label,
    calibration_reports_by_group,
)

__all__ = ["WindowedCalibration"]


class WindowedCalibration:
    """Sliding window of ``(ts_ms, symbol_idx, prob, label)`` rows for one model version.

    >>> w = WindowedCalibration(retention_ms=60_000)
    >>> w.add([1_000, 2_000], [0, 1], [0.2, 0.7], [0, 1])
    >>> w.evaluate(2_000, 60_000, bins=2, min_bin_samples=1)["overall"]["n"]
    2
    """

    def __init__(
        self,
        retention_ms: int,
        *,
        model_version: str = "",
        initial_rows: int = 4096,
        max_rows: int = 4_000_000,
    ) -> None:
        if retention_ms <= 0:
            raise ValueError(f"retention_ms must be > 0 (the widest window to evaluate); got {retention_ms!r}")
        if not 1 <= initial_rows <= max_rows:
            raise ValueError(f"need 1 <= initial_rows <= max_rows; got {initial_rows} and {max_rows}")
        self.retention_ms = int(retention_ms)
        self.model_version = model_version
        self.max_rows = int(max_rows)
        self.dropped = 0  # rows lost to the max_rows cap, not to retention
        self._newest: int | None = None
        self._start = 0
        self._end = 0
        self._alloc(int(initial_rows))

    # ------------------------------------------------------------ storage

    def _alloc(self, rows: int) -> None:
        self._ts = np.empty(rows, np.int64)
        self._sym = np.empty(rows, np.int32)
        self._prob = np.empty(rows, np.float64)
        self._label = np.empty(rows, np.float64)

    @property
    def capacity(self) -> int:
        return self._ts.size

    def __len__(self) -> int:
        return self._end - self._start

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self._ts, self._sym, self._prob, self._label

    def _make_room(self, m: int) -> None:
        """Ensure ``m`` free slots after the tail: compact, then grow, then drop oldest."""
        if self._end + m <= self.capacity:
            return
        live = slice(self._start, self._end)
        keep = self._ts[live] > self._cutoff()  # also frees out-of-order stale rows
        cols = [c[live][keep] for c in self._columns()]
        need = cols[0].size + m
        if need > self.capacity:
            rows = self.capacity
            while rows < need and rows < self.max_rows:
                rows *= 2
            rows = min(rows, self.max_rows)
            self._alloc(rows)
        excess = max(0, need - self.capacity)
        if excess:
            self.dropped += excess
            cols = [c[excess:] for c in cols]
        for dst, src in zip(self._columns(), cols):
            dst[: src.size] = src
        self._start, self._end = 0, cols[0].size

    def _cutoff(self) -> int:
        return -(2**62) if self._newest is None else self._newest - self.retention_ms

    def _release_head(self) -> None:
        # rows arrive roughly in time order: release the stale prefix; stragglers behind
        # a fresh row wait for the next compaction in _make_room
        self._start += _kernels.stale_prefix(self._ts[self._start : self._end], self._cutoff())

    # ------------------------------------------------------------ API

    def add(self, ts_ms: ArrayLike, symbol_idx: ArrayLike, prob: ArrayLike, label: ArrayLike) -> None:
        """Append labeled predictions (validated: equal lengths, prob in [0, 1], label 0/1)."""
        p, y = _check_prob_label(prob, label)
        ts = np.asarray(ts_ms)
        sym = np.asarray(symbol_idx)
        if ts.shape != p.shape or sym.shape != p.shape:
            raise ValueError(
                f"ts_ms, symbol_idx, prob and label must have the same length; "
                f"got {ts.size}, {sym.size}, {p.size}, {y.size}"
            )
        if ts.dtype.kind not in "iu" or sym.dtype.kind not in "iu":
            raise ValueError(f"ts_ms and symbol_idx must be integer arrays; got {ts.dtype} and {sym.dtype}")
        if sym.size and (sym.min() < 0 or sym.max() > np.iinfo(np.int32).max):
            raise ValueError("symbol_idx must be in [0, 2**31); got a value outside it")
        m = p.size
        if m == 0:
            return
        newest = int(ts.max())
        self._newest = newest if self._newest is None else max(self._newest, newest)
        self._release_head()
        if m > self.max_rows:  # keep only the newest rows that fit at all
            self.dropped += m - self.max_rows
            keep = np.argsort(ts, kind="stable")[m - self.max_rows :]
            ts, sym, p, y = ts[keep], sym[keep], p[keep], y[keep]
            m = self.max_rows
        self._make_room(m)
        e = self._end
        self._ts[e : e + m] = ts
        self._sym[e : e + m] = sym
        self._prob[e : e + m] = p
        self._label[e : e + m] = y
        self._end = e + m

    def evaluate(
        self,
        now_ms: int,
        window_ms: int,
        bins: int = 10,
        z: float = 1.96,
        min_bin_samples: int = 30,
        *,
        per_symbol: bool = True,
    ) -> dict[str, Any]:
        """Reports over rows with ``now_ms − window_ms < ts <= now_ms``.

        Returns ``{"overall": report, "per_symbol": {symbol_idx: report}}`` where each
        report is ``models.calibration.calibration_report`` output; ``per_symbol`` is
        empty when ``per_symbol=False`` and holds only symbols with rows in the window.
        """
        if window_ms <= 0:
            raise ValueError(f"window_ms must be > 0; got {window_ms!r}")
        if window_ms > self.retention_ms:
            raise ValueError(
                f"window_ms {window_ms} exceeds retention_ms {self.retention_ms}; rows older than "
                "the retention were released, so build the window with a larger retention_ms"
            )
        _check_params(bins, z, min_bin_samples)
        live = slice(self._start, self._end)
        ts = self._ts[live]
        mask = (ts > now_ms - window_ms) & (ts <= now_ms)
        p, y = self._prob[live][mask], self._label[live][mask]
        sym = self._sym[live][mask] if per_symbol else None
        overall, groups = calibration_reports_by_group(
            p, y, sym, bins=bins, z=z, min_bin_samples=min_bin_samples, check=False
        )
        return {"overall": overall, "per_symbol": groups}
