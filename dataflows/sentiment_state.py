"""Per-symbol sentiment engine: dedup/late, leak-free bars and EMAs (DESIGN §4, §5).

One `SentimentState` per symbol. It is plain numpy arrays plus a few ints, so it
pickles (Bytewax snapshots it) and its size is bounded: the dedup memory holds
the ids of the last `dedup_window_ms` of ingest time, pending ticks are capped
at `max_pending`, and closed bars live in a ring of `history_bars`. A silence costs a
bounded number of rows: after `max(vol_window, 5)` bars without a tick the bar state is a
fixed point and further empty bars are implied (`empty_bars_kept`; kernels module doc).

Leak-free rule: bar b is closed once the caller's watermark reaches b + grace;
at that moment exactly the ticks with ts < b and ingest_ts <= b + grace have
been committed, whatever order they arrived in. Ticks moving at the same bar are
folded in a canonical order (sorted by content), so any permutation or split of
the input that respects the watermark gives bit-identical rows.

    >>> st = SentimentState(SentimentConfig())
    >>> b = TickBatch.from_records([{"ts": 60_500, "ingest_ts": 60_600, "score": 0.5,
    ...                              "polarity": 1, "id": "a"}])
    >>> st.add_ticks(b).tolist()
    [0]
    >>> [(r["bar_end"], r["sent_cnt"], r["sent_score"]) for r in st.advance(122_000)]
    [(120000, 1, 0.5)]
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataflows.kernels import sentiment as k
from dataflows.kernels.entry import resolve
from dataflows.kernels.id_hash import hash_id, hash_ids

__all__ = ["SentimentConfig", "SentimentState", "TickBatch", "hash_id"]

_IMPUTE = {"ffill": k.IMPUTE_FFILL, "zero": k.IMPUTE_ZERO, "none": k.IMPUTE_NONE}
_INT64_MIN = np.iinfo(np.int64).min
_MIN_HISTORY = 5  # sent_d5 looks five bars back
_NO_CUTS = np.empty(0, np.int64)
_PENDING = ("_p_ts", "_p_ingest", "_p_score", "_p_pol", "_p_weight")
_SEEN = ("_seen_hash", "_seen_t")


def _grow(state: object, names: tuple[str, ...], used: int, extra: int) -> None:
    """Arrays `names` of `state` (the first `used` rows in use) with room for `extra` more:
    doubled when short, so that appending stays amortized O(1)."""
    size = getattr(state, names[0]).size
    if used + extra <= size:
        return
    size = max(used + extra, 2 * size, 16)
    for name in names:
        old = getattr(state, name)
        grown = np.empty(size, old.dtype)
        grown[:used] = old[:used]
        setattr(state, name, grown)


@functools.cache
def _no_bars(n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """`advance_columns` when no bar closes (most tick batches): one read-only pair, not two
    new arrays per call."""
    ends, vals = np.empty(0, np.int64), np.empty((0, n_values))
    ends.flags.writeable = vals.flags.writeable = False
    return ends, vals


def _check(ok: bool, name: str, expected: str, got: object) -> None:
    if not ok:
        raise ValueError(f"The {name!r} parameter of SentimentConfig must be {expected}. Got {got!r} instead.")


@dataclass(frozen=True)
class SentimentConfig:
    """Sentiment engine settings (DESIGN §4); times in ms unless the name says seconds."""

    step_ms: int = 60_000
    ema_windows_s: tuple[float, ...] = (300, 900, 3600)
    ema_names: tuple[str, ...] = ("5m", "15m", "60m")
    dedup_window_ms: int = 120_000
    max_latency_ms: int = 600_000
    grace_ms: int = 2_000
    impute: str = "ffill"
    agg_weights: dict[str, float] = field(default_factory=dict)
    vol_window: int = 30
    history_bars: int = 256
    max_pending: int = 100_000

    def __post_init__(self) -> None:
        _check(self.step_ms > 0, "step_ms", "an int > 0", self.step_ms)
        _check(
            len(self.ema_windows_s) == len(self.ema_names) and len(self.ema_names) > 0,
            "ema_names",
            f"one name per window of ema_windows_s {self.ema_windows_s}",
            self.ema_names,
        )
        _check(all(w > 0 for w in self.ema_windows_s), "ema_windows_s", "positive seconds", self.ema_windows_s)
        _check(len(set(self.ema_names)) == len(self.ema_names), "ema_names", "unique", self.ema_names)
        _check(self.dedup_window_ms >= 0, "dedup_window_ms", "an int >= 0", self.dedup_window_ms)
        _check(self.max_latency_ms >= 0, "max_latency_ms", "an int >= 0", self.max_latency_ms)
        _check(self.grace_ms >= 0, "grace_ms", "an int >= 0", self.grace_ms)
        _check(self.impute in _IMPUTE, "impute", f"one of {sorted(_IMPUTE)}", self.impute)
        _check(
            set(self.agg_weights) <= set(self.ema_names),
            "agg_weights",
            f"keyed by window names {self.ema_names}",
            self.agg_weights,
        )
        _check(self.vol_window >= 2, "vol_window", "an int >= 2", self.vol_window)
        _check(self.history_bars >= 64, "history_bars", "an int >= 64", self.history_bars)
        _check(self.max_pending >= 2, "max_pending", "an int >= 2", self.max_pending)
        object.__setattr__(self, "agg_weights", dict(self.agg_weights))  # no aliasing of the caller's dict

    @property
    def columns(self) -> tuple[str, ...]:
        """Keys of a bar row, in order (the defaults give tickcast.features' sentiment names)."""
        emas = tuple(f"sent_ema_{n}" for n in self.ema_names)
        head = ("sent_score", "sent_cnt", "sent_pos_ratio", "sent_d1", "sent_d5", f"sent_vol_{self.vol_window}")
        return ("bar_end",) + head + emas + ("sent_composite", "imputed")


@dataclass(frozen=True, eq=False)
class TickBatch:
    """Columnar ticks of one symbol; arrays are coerced to the dtypes below and validated."""

    ts: np.ndarray  # int64 event time, ms
    ingest_ts: np.ndarray  # int64, ms
    score: np.ndarray  # float64 in [-1, 1]
    polarity: np.ndarray  # int8 in {-1, 0, 1}
    weight: np.ndarray  # float64 >= 0, provider trust
    id_hash: np.ndarray  # int64 (a uint64 hash is viewed as int64)

    def __post_init__(self) -> None:
        id_hash = np.asarray(self.id_hash)
        if id_hash.dtype == np.uint64:
            id_hash = id_hash.view(np.int64)
        cols: dict[str, np.ndarray] = {
            "ts": np.asarray(self.ts, np.int64),
            "ingest_ts": np.asarray(self.ingest_ts, np.int64),
            "score": np.asarray(self.score, np.float64),
            "polarity": np.asarray(self.polarity, np.int8),
            "weight": np.asarray(self.weight, np.float64),
            "id_hash": np.asarray(id_hash, np.int64),
        }
        n = cols["ts"].shape
        for name, arr in cols.items():
            if arr.ndim != 1 or arr.shape != n:
                raise ValueError(f"TickBatch.{name} must be 1-D with the shape of ts {n}; got shape {arr.shape}")
            object.__setattr__(self, name, arr)
        _expect(np.isfinite(self.score) & (np.abs(self.score) <= 1.0), "score", "finite in [-1, 1]", self.score)
        _expect(np.abs(self.polarity) <= 1, "polarity", "in {-1, 0, 1}", self.polarity)
        _expect(np.isfinite(self.weight) & (self.weight >= 0.0), "weight", "finite and >= 0", self.weight)

    def __len__(self) -> int:
        return int(self.ts.size)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> TickBatch:
        """From dicts with ts, ingest_ts, score, polarity, id and optional weight (default 1.0), validated."""
        rows = list(records)
        cols: dict[str, np.ndarray] = {
            "ts": np.array([r["ts"] for r in rows], np.int64),
            "ingest_ts": np.array([r["ingest_ts"] for r in rows], np.int64),
            "score": np.array([r["score"] for r in rows], np.float64),
            "polarity": np.array([r["polarity"] for r in rows], np.int8),
            "weight": np.array([r.get("weight", 1.0) for r in rows], np.float64),
            "id_hash": hash_ids([str(r["id"]) for r in rows]),
        }
        return cls(**cols)


def _expect(ok: np.ndarray, name: str, expected: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"TickBatch.{name} must be {expected}; row {i} is {values[i]!r} ({bad.size} bad rows)")


class SentimentState:
    """Bounded, picklable sentiment state of one symbol.

    `add_ticks` dedups and parks accepted ticks as pending; `advance(watermark)`
    closes every bar b with b + grace <= watermark and returns its rows (see
    `SentimentConfig.columns`); `bar_at` looks a recent bar up for the as-of join;
    `latest` is the live, not leak-free, view.
    """

    def __init__(self, config: SentimentConfig | None = None) -> None:
        cfg = config if config is not None else SentimentConfig()
        self.config = cfg
        n_win = len(cfg.ema_names)
        self._columns = cfg.columns
        self._ema_columns = tuple(f"sent_ema_{n}" for n in cfg.ema_names)
        self._windows_ms = np.asarray(cfg.ema_windows_s, np.float64) * 1000.0
        # NaN weights make the kernel's composite NaN when no aggregation is configured.
        self._agg_w = (
            np.array([cfg.agg_weights.get(n, 0.0) for n in cfg.ema_names], np.float64)
            if cfg.agg_weights
            else np.full(n_win, np.nan)
        )
        self._impute = _IMPUTE[cfg.impute]
        # dedup memory: sorted ids and the ingest time each was last accepted at, the first
        # _seen_n rows of arrays with room (the kernel rewrites them in place)
        self._seen_n = 0
        self._seen_hash = np.empty(0, np.int64)
        self._seen_t = np.empty(0, np.int64)
        self._max_ingest = _INT64_MIN
        # pending ticks (accepted, not yet committed): the first _p_n rows of arrays with room
        self._p_n = 0
        self._p_ts = np.empty(0, np.int64)
        self._p_ingest = np.empty(0, np.int64)
        self._p_score = np.empty(0, np.float64)
        self._p_pol = np.empty(0, np.int8)
        self._p_weight = np.empty(0, np.float64)
        # committed state
        self._ema_mean = np.full(n_win, np.nan)
        self._ema_logw = np.full(n_win, -np.inf)
        self._ref_t = 0  # time the EMA state is referenced to: the last closed (not implied) bar end
        self._empty_run = np.zeros(1, np.int64)  # bars without a tick since the last bar with one
        self._hist = np.full(max(cfg.vol_window, _MIN_HISTORY), np.nan)  # last emitted scores, oldest first
        self._prev_ratio = np.full(1, np.nan)
        self._next_bar: int | None = None
        self._watermark: int | None = None
        # ring of closed bars, slot = (bar_end // step) % history_bars
        self._ring_end = np.full(cfg.history_bars, _INT64_MIN, np.int64)
        self._ring_val = np.full((cfg.history_bars, len(self._columns) - 1), np.nan)
        self._backlog: list[tuple[np.ndarray, np.ndarray]] = []  # forced closes, handed out by the next advance
        self.n_accepted = 0
        self.n_duplicate = 0
        self.n_late = 0
        self.n_forced_closes = 0
        self._close_kernel: Any = None  # k.close_through's entry point for this state (`_close_through`)
        self._view_kernel: Any = None  # k.live_view's entry point for this state (`latest`)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_close_kernel", None)  # compiled functions, not state
        state.pop("_view_kernel", None)
        for name in _PENDING:  # the pending rows only, not the room after them
            state[name] = state[name][: self._p_n].copy()
        for name in _SEEN:  # the same for the dedup memory
            state[name] = state[name][: self._seen_n].copy()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_empty_run", np.zeros(1, np.int64))  # snapshots from before implied bars
        state.setdefault("_p_n", int(state["_p_ts"].size))  # ... and before pending arrays had room
        state.setdefault("_seen_n", int(state["_seen_hash"].size))  # ... and before the dedup memory had room
        self.__dict__.update(state)
        self._close_kernel = self._view_kernel = None

    @property
    def seen_ids(self) -> np.ndarray:
        """The id hashes the dedup memory holds (sorted)."""
        return self._seen_hash[: self._seen_n]

    def _make_room(self, extra: int) -> None:
        """Room for `extra` more pending rows and dedup entries (the kernels write them in place)."""
        _grow(self, _PENDING, self._p_n, extra)
        _grow(self, _SEEN, self._seen_n, extra)

    # -- properties -------------------------------------------------------------------
    @property
    def empty_bars_kept(self) -> int:
        """Empty bars (no tick) stored after the last bar with a tick; later ones are implied:
        their row equals the last stored one but for `bar_end`, and they are not returned."""
        return int(self._hist.size)

    @property
    def last_bar_end(self) -> int | None:
        """End of the last closed bar, None before the first."""
        return None if self._next_bar is None else self._next_bar - self.config.step_ms

    @property
    def watermark(self) -> int | None:
        """Highest watermark passed to `advance`, None before the first call."""
        return self._watermark

    @property
    def n_pending(self) -> int:
        return self._p_n

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    # -- ingest -----------------------------------------------------------------------
    def add_ticks(self, batch: TickBatch) -> np.ndarray:
        """Dedup and park a batch; return int8 status per tick (0 accepted, 1 duplicate, 2 late).

        Late: ingest_ts − ts > max_latency_ms (checked first). Duplicate: the id was
        accepted at t0 with ingest_ts − t0 <= dedup_window_ms, earlier rows of this
        batch included. Memory older than max ingest_ts seen − window is evicted, which
        is exact while ingest time does not run backwards across batches.
        """
        return self.add_columns(batch.ts, batch.ingest_ts, batch.score, batch.polarity, batch.weight, batch.id_hash)

    def add_columns(
        self,
        ts: np.ndarray,
        ingest_ts: np.ndarray,
        score: np.ndarray,
        polarity: np.ndarray,
        weight: np.ndarray,
        id_hash: np.ndarray,
    ) -> np.ndarray:
        """`add_ticks` on columns the caller validated, with TickBatch's dtypes."""
        return self.admit_after(ts, ingest_ts, score, polarity, weight, id_hash, None)[0]

    def admit_after(
        self,
        ts: np.ndarray,
        ingest_ts: np.ndarray,
        score: np.ndarray,
        polarity: np.ndarray,
        weight: np.ndarray,
        id_hash: np.ndarray,
        watermark: int | None,
        candle_cuts: np.ndarray = _NO_CUTS,
        candle_ingest: np.ndarray = _NO_CUTS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`add_columns` for the flow: ticks in arrival order, each admitted after the watermark
        before it — `watermark` (the symbol's, before this batch), the accepted ticks before
        it, and the candles before it (candle c came after the first `candle_cuts[c]` ticks;
        `candle_ingest[c]` its ingest time; refused candles are left out). A tick at or below
        that watermark cannot enter a bar the watermark has closed (see the kernels module
        doc), so a batch gives the bars that one record per batch gives. `watermark` None:
        ingest times are parked as they are (`add_columns`).

        Returns (status, the watermark after each tick: `watermark`, the accepted ticks up to
        it and the candles passed in)."""
        cfg = self.config
        if ts.size == 0:
            return np.empty(0, np.int8), np.empty(0, np.int64)
        if self._p_n + ts.size > self._p_ts.size or self._seen_n + ts.size > self._seen_hash.size:
            self._make_room(ts.size)
        status, self._seen_n, n_ok, n_dup, n_late, self._max_ingest, after = k.admit(
            self._seen_hash,
            self._seen_t,
            self._seen_n,
            self._p_ts,
            self._p_ingest,
            self._p_score,
            self._p_pol,
            self._p_weight,
            self._p_n,
            ts,
            ingest_ts,
            score,
            polarity,
            weight,
            id_hash,
            cfg.max_latency_ms,
            cfg.dedup_window_ms,
            self._max_ingest,
            watermark is not None,
            _INT64_MIN if watermark is None else watermark,
            candle_cuts,
            candle_ingest,
        )
        self._p_n += n_ok
        self.n_accepted += n_ok
        self.n_late += n_late
        self.n_duplicate += n_dup
        if self._p_n > cfg.max_pending:
            self._force_drain()
        return status, after

    def _force_drain(self) -> None:
        """Pending over the cap (the watermark stalled): close bars early until half the cap remains.

        Still leak-free (each bar commits only ts < b, ingest <= b + grace), but a tick
        arriving later for a force-closed bar only reaches the EMAs, so such a run is not
        replay-identical. Rows wait in a backlog returned by the next `advance`.
        """
        cfg = self.config
        m = self._entry_bars()
        n_drain = m.size - cfg.max_pending // 2
        self._backlog.append(self._close_through(int(np.partition(m, n_drain - 1)[n_drain - 1])))
        self.n_forced_closes += 1

    # -- bars -------------------------------------------------------------------------
    def advance(self, watermark_ms: int) -> list[dict[str, Any]]:
        """Close every bar b with b + grace_ms <= watermark; return their rows, oldest first.

        The watermark only moves forward (a smaller value is ignored). The first bar
        is the first one that commits a tick (for promptly ingested ticks, the bar
        holding the earliest one), so the rows do not depend on arrival order.
        """
        ends, vals = self.advance_columns(watermark_ms)
        return [self.row(int(b), v) for b, v in zip(ends.tolist(), vals.tolist(), strict=True)]

    def advance_columns(self, watermark_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """`advance` as arrays: bar ends (int64, n) and values (n, len(columns) - 1), in column order."""
        cfg = self.config
        if self._watermark is None or watermark_ms > self._watermark:
            self._watermark = int(watermark_ms)
        last = (self._watermark - cfg.grace_ms) // cfg.step_ms * cfg.step_ms
        if not self._backlog:  # the usual case: no forced close waits
            return self._close_through(last)
        parts, self._backlog = [*self._backlog, self._close_through(last)], []
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _entry_bars(self) -> np.ndarray:
        cfg = self.config
        floor = _INT64_MIN if self._next_bar is None else self._next_bar
        n = self._p_n
        return k.entry_bars(self._p_ts[:n], self._p_ingest[:n], cfg.step_ms, cfg.grace_ms, floor)

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        return _no_bars(len(self._columns) - 1)

    def _close_through(self, last: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if self._next_bar is not None and last < self._next_bar:
            return self._empty()
        args = (
            _INT64_MIN if self._next_bar is None else self._next_bar,
            last,
            cfg.step_ms,
            cfg.grace_ms,
            self._p_ts,
            self._p_ingest,
            self._p_score,
            self._p_pol,
            self._p_weight,
            self._p_n,
            self._windows_ms,
            self._agg_w,
            self._ema_mean,
            self._ema_logw,
            self._ref_t,
            self._hist,
            self._prev_ratio,
            self._impute,
            cfg.vol_window,
            self._empty_run,
            self._hist.size,
            self._ring_end,
            self._ring_val,
        )
        # The arguments' types never change (arrays this state made with fixed dtypes, and ints
        # while the config's are: `resolve` checks): after the first call, the compiled code is
        # called without the dispatcher (kernels/entry.py).
        kernel = self._close_kernel
        if kernel is None:
            closed, bar_ends, out, ref_t, n_left = k.close_through(*args)
            self._close_kernel = resolve(k.close_through, args, scalars=(int,))
        else:
            closed, bar_ends, out, ref_t, n_left = kernel(*args)
        if closed:
            self._p_n = int(n_left)
            self._next_bar = last + cfg.step_ms
            self._ref_t = int(ref_t)
        return bar_ends, out

    def row(self, bar_end: int, vals: list[float]) -> dict[str, Any]:
        row: dict[str, Any] = dict(zip(self._columns, [bar_end, *vals], strict=True))
        row["sent_cnt"] = int(row["sent_cnt"])
        row["imputed"] = int(row["imputed"])
        return row

    def bar_at(self, bar_end: int) -> dict[str, Any] | None:
        """The closed bar ending at bar_end if it is still in the ring, else None."""
        vals = self.bar_values(bar_end)
        return None if vals is None else self.row(int(bar_end), vals)

    def bar_values(self, bar_end: int, *, as_of: int | None = None) -> list[float] | None:
        """`bar_at` as the values in `columns[1:]` order (floats; sent_cnt and imputed too).

        The ring answers for the last `history_bars` bar ends (implied ones included).
        `as_of`: answer as the ring did when the last closed bar was `as_of` (an earlier
        `last_bar_end`; the caller makes sure the bar has not left the ring since)."""
        cfg = self.config
        last = self.last_bar_end if as_of is None else as_of
        if last is None or not last - cfg.history_bars * cfg.step_ms < bar_end <= last:
            return None
        slot = (bar_end // cfg.step_ms) % cfg.history_bars
        if self._ring_end.item(slot) != bar_end:  # a Python int, not a numpy scalar, to compare
            return None
        return self._ring_val[slot].tolist()

    # -- live view --------------------------------------------------------------------
    def latest(self, now_ms: int) -> dict[str, Any]:
        """Live view at now (not leak-free, not stored): EMAs over committed + pending ticks with ts < now,
        the open bar [⌊now/step⌋·step, now) from pending ticks, and the last closed bar end."""
        cfg = self.config
        n = self._p_n
        args = (
            self._ema_mean, self._ema_logw, self._ref_t, int(now_ms),
            self._p_ts[:n], self._p_score[:n], self._p_weight[:n], self._windows_ms, self._agg_w, cfg.step_ms,
        )  # fmt: skip
        # As in `_close_through`: this state's arrays (the pending ones sliced: still C-contiguous
        # of the same dtype) and ints, so after the first call the compiled code is called
        # without the dispatcher's look at ten arguments.
        kernel = self._view_kernel
        if kernel is None:
            vals = k.live_view(*args).tolist()
            self._view_kernel = resolve(k.live_view, args, scalars=(int,))
        else:
            vals = kernel(*args).tolist()
        n_win = len(cfg.ema_names)
        start = now_ms // cfg.step_ms * cfg.step_ms
        view: dict[str, Any] = {"as_of": int(now_ms)}
        view.update(zip(self._ema_columns, vals[:n_win], strict=True))
        view.update(
            sent_composite=vals[n_win],
            open_bar_end=int(start + cfg.step_ms),
            open_cnt=int(vals[n_win + 1]),
            open_score=vals[n_win + 2],
            last_bar_end=self.last_bar_end,
        )
        return view
