"""Event-time order across symbols: candle times are handed to the engine in time order.

Items reach the trading stage in arrival order, which differs between a live run, file
replays at different batch sizes, Kafka replays (partitions race apart) and resumed runs.
Cross-symbol guards (concurrency, exposure, daily loss, drawdown) make the result depend on
that order, so the stage buffers bars and releases candle time T only when it knows no
more bar of time <= T will come. The rule:

- `last[s]` is the newest candle time symbol s has delivered (each symbol's bars arrive
  in time order: its shard releases them in order and the model stage keeps it).
- `F` = max over symbols of `last[s]` (the frontier).
- s is *waited for* unless it fell behind: `last[s] < F - idle_ms` (a symbol that stopped
  delivering, or live: one marked absent by a timeout until it delivers again).
- T is ready when every waited-for symbol has `last[s] >= T`. Ready times are released
  in increasing order, each with all its bars (sorted by symbol).
- At the start (nothing released yet) the first release also waits until the frontier is
  `join_ms` (the warm-up span, TRADING_WARMUP_CANDLES candles) past the oldest buffered time:
  the first symbol to deliver does not define the first candle time alone.
- A control with event time `at` is applied before the first released T > at; one with
  `at <= R` (R = the newest released time) is applied at once, after R.
- Live only: the oldest buffered time is released after `timeout_s` of wall clock since
  its first bar arrived; the symbols it did not wait for are then absent until their
  next bar.
- Bounded: above `max_items` buffered bars, the oldest time is released (counted).
- End of input: everything is released, then the remaining controls.

A bar for a time already released (T <= R) is *late*: the engine uses it for the mark only.
A stage started from the stored book (`resumed_at`, a restart without a recovery store)
drops bars at or before the time that book was traded to, silently and counted: the store
already holds what they did, and a feed that re-sends its history must not trade it twice.
A symbol's first bars can be late without changing any record (its warm-up candles make
no decision, TRADING_WARMUP_CANDLES), so a symbol may join a little after the others.

What this guarantees: the engine sees exactly "every bar of the input, sorted by (time,
symbol), with the controls at their times" — the same sequence for any arrival order —
as long as no symbol falls behind the others by more than `idle_ms` of event time while
it still has bars to deliver, and no new symbol's first delivery comes later than its
warm-up. Replays (live=False) have no wall-clock rule.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from dataflows.trading.items import TradeBar, TradeControl

Release = tuple[str, int, list[TradeBar]] | tuple[str, TradeControl]  # ("step", T, bars) | ("control", c)


@dataclass
class OrderState:
    last: dict[str, int] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    buffer: dict[int, list[TradeBar]] = field(default_factory=dict)
    arrived: dict[int, float] = field(default_factory=dict)  # wall time of each buffered time's first bar
    controls: list[tuple[int, str, TradeControl]] = field(default_factory=list)  # sorted (at, id, control)
    released: int = -1
    count: int = 0
    overflows: int = 0
    resumed_at: int = -1  # started from the stored book traded to this candle time: older bars are done
    skipped: int = 0  # bars dropped for that (already traded before the restart)


class EventTimeOrder:
    def __init__(
        self,
        idle_ms: int,
        *,
        timeout_s: float | None,
        max_items: int,
        join_ms: int = 0,
        state: OrderState | None = None,
    ) -> None:
        self.idle_ms = idle_ms
        self.join_ms = join_ms
        self.timeout_s = timeout_s
        self.max_items = max_items
        self.state = state or OrderState()

    # --- input ------------------------------------------------------------------------------
    def add(self, bar: TradeBar, now: float = 0.0) -> bool:
        """Buffer a bar; False when it is late (its time was already released). A bar at or before
        `resumed_at` is dropped (counted in `skipped`), not late."""
        st = self.state
        t = bar.close_time
        if t <= st.resumed_at:
            st.skipped += 1
            return True
        if st.last.get(bar.symbol, -1) < t:
            st.last[bar.symbol] = t
        st.absent.discard(bar.symbol)
        if t <= st.released:
            return False
        group = st.buffer.get(t)
        if group is None:
            st.buffer[t] = [bar]
            st.arrived[t] = now
        else:
            group.append(bar)
        st.count += 1
        return True

    def add_many(self, bars: list[TradeBar], now: float = 0.0) -> list[TradeBar]:
        """`add` for each bar in turn (one call per model-stage batch); returns the late ones."""
        st = self.state
        last, absent, buffer, arrived, released = st.last, st.absent, st.buffer, st.arrived, st.released
        late: list[TradeBar] = []
        added = 0
        if st.resumed_at >= 0:
            kept = [bar for bar in bars if bar.close_time > st.resumed_at]
            st.skipped += len(bars) - len(kept)
            bars = kept
        for bar in bars:
            t, symbol = bar.close_time, bar.symbol
            if last.get(symbol, -1) < t:
                last[symbol] = t
            if absent:
                absent.discard(symbol)
            if t <= released:
                late.append(bar)
                continue
            group = buffer.get(t)
            if group is None:
                buffer[t] = [bar]
                arrived[t] = now
            else:
                group.append(bar)
            added += 1
        st.count += added
        return late

    def add_control(self, control: TradeControl) -> None:
        bisect.insort(self.state.controls, (control.at, control.id, control))

    # --- output -----------------------------------------------------------------------------
    def release(self, now: float = 0.0) -> list[Release]:
        """What may be handed to the engine now, in order."""
        out: list[Release] = []
        st = self.state
        if st.buffer:
            # The bound depends on the symbols' newest times and the absent set only, which
            # releasing does not change (marking absent does): computed once, not per time.
            bound = self._bound()
            for oldest in sorted(st.buffer):
                if oldest <= bound and not self._starting(oldest):
                    self._emit(oldest, out)
                elif st.count > self.max_items:
                    st.overflows += 1
                    self._emit(oldest, out)
                elif self.timeout_s is not None and now - st.arrived[oldest] >= self.timeout_s:
                    self._mark_absent(oldest)
                    bound = self._bound()
                    self._emit(oldest, out)
                else:
                    break
        self._controls_until(st.released, out, inclusive=True)
        return out

    def flush(self) -> list[Release]:
        """End of input: everything, in order."""
        out: list[Release] = []
        for t in sorted(self.state.buffer):
            self._emit(t, out)
        self._controls_until(None, out, inclusive=True)
        return out

    def deadline(self) -> float | None:
        """Live: wall time at which the oldest buffered time times out."""
        if self.timeout_s is None or not self.state.buffer:
            return None
        return self.state.arrived[min(self.state.buffer)] + self.timeout_s

    @property
    def buffered(self) -> int:
        return self.state.count

    # --- internals ----------------------------------------------------------------------------
    def _starting(self, oldest: int) -> bool:
        """Before the first release: hold until the input reaches `join_ms` past the oldest time,
        so the symbols whose first candles arrive a little later are known (and waited for)."""
        return self.state.released < 0 and max(self.state.last.values()) - oldest < self.join_ms

    def _bound(self) -> int:
        """The newest time every waited-for symbol has delivered."""
        last = self.state.last
        frontier = max(last.values())
        floor = frontier - self.idle_ms
        absent = self.state.absent
        waited = [t for s, t in last.items() if t >= floor and s not in absent]
        return min(waited) if waited else frontier

    def _mark_absent(self, t: int) -> None:
        st = self.state
        floor = max(st.last.values()) - self.idle_ms
        st.absent.update(s for s, last in st.last.items() if last < t and last >= floor)

    def _emit(self, t: int, out: list[Release]) -> None:
        st = self.state
        self._controls_until(t, out, inclusive=False)
        bars = st.buffer.pop(t)
        st.arrived.pop(t, None)
        st.count -= len(bars)
        bars.sort(key=lambda b: b.symbol)
        if len(bars) > 1 and len({b.symbol for b in bars}) < len(bars):  # a bar delivered twice: keep one
            bars = list({b.symbol: b for b in bars}.values())
        out.append(("step", t, bars))
        st.released = max(st.released, t)

    def _controls_until(self, t: int | None, out: list[Release], *, inclusive: bool) -> None:
        controls = self.state.controls
        while controls and (t is None or controls[0][0] < t or (inclusive and controls[0][0] <= t)):
            out.append(("control", controls.pop(0)[2]))
