"""Risk guards' state (pure): each guard has a state, a reason and the time it tripped.

- kill switch: `halted` by an admin until resumed; blocks entries.
- drawdown: trips when equity falls `max_drawdown` below its peak; blocks entries until
  an admin resets it (the peak becomes the equity at the reset).
- daily loss: trips when the day's PnL (equity now - equity at the day's start,
  realised and unrealised) reaches -cap x the day's starting equity; blocks entries
  until the next day. The day of candle T is the calendar date of T - 1 ms in
  RISK_DAILY_LOSS_TIMEZONE (a candle closing at midnight belongs to the day it ends).
- symbol exposure, concurrent positions, slippage, cash: checked per entry (refusals).

Equity is evaluated after every fill and at every candle close, so a trip happens at
exactly the fill (or close) that crosses the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

OK, TRIPPED, HALTED = "ok", "tripped", "halted"


@dataclass
class GuardState:
    state: str = OK
    reason: str = ""
    tripped_at: int = 0
    last_trip_at: int = 0
    last_trip_reason: str = ""

    @property
    def active(self) -> bool:
        return self.state != OK

    def trip(self, state: str, reason: str, at: int) -> None:
        self.state, self.reason, self.tripped_at = state, reason, at
        self.last_trip_at, self.last_trip_reason = at, reason

    def clear(self) -> None:
        self.state, self.reason, self.tripped_at = OK, "", 0


@dataclass
class Guards:
    kill_switch: GuardState = field(default_factory=GuardState)
    drawdown: GuardState = field(default_factory=GuardState)
    daily_loss: GuardState = field(default_factory=GuardState)
    peak_equity: float = 0.0
    day: str = ""
    day_start_equity: float = 0.0

    def blocking(self) -> str | None:
        """The first guard that blocks new entries, or None."""
        for name in ("kill_switch", "drawdown", "daily_loss"):
            if getattr(self, name).active:
                return name
        return None


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


_day_cache: dict[tuple[str, int], str] = {}


def day_of(close_time_ms: int, tz: str) -> str:
    """The trading day of a candle closing at `close_time_ms`: the date of close_time - 1 ms in `tz`.

    >>> day_of(1_763_683_200_000, "UTC"), day_of(1_763_683_260_000, "UTC")  # 2025-11-21 00:00 and 00:01 UTC
    ('2025-11-20', '2025-11-21')
    """
    key = (tz, (close_time_ms - 1) // 900_000)  # every zone's midnight is on a quarter hour of UTC
    day = _day_cache.get(key)
    if day is None:
        if len(_day_cache) > 100_000:
            _day_cache.clear()
        stamp = datetime.fromtimestamp((close_time_ms - 1) / 1000, tz=UTC).astimezone(_zone(tz))
        day = _day_cache[key] = stamp.date().isoformat()
    return day
