"""How often the API may start a job of each kind (retrain, recalibrate, labeler, backfill).

A token bucket per job kind: `burst` starts back to back, then one more every
`3600 / per_hour` seconds (`API_JOB_RATE_BURST`, `API_JOB_RATE_PER_HOUR`). Only a start
takes a token: a request answered "already running" or refused for its body does not.
The scheduler and the flow's own triggers do not go through the API and are not limited
here (they have their own cooldowns).

>>> t = [0.0]
>>> limiter = JobStartLimiter(per_hour=60, burst=2, clock=lambda: t[0])
>>> limiter.take("train"), limiter.take("train"), limiter.take("train")
(None, None, 60.0)
>>> t[0] = 30.0; limiter.take("train")
30.0
>>> limiter.take("labeler") is None  # each kind has its own bucket
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class JobStartLimiter:
    def __init__(self, *, per_hour: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_hour < 1 or burst < 1:
            raise ValueError(f"per_hour and burst must be >= 1, got {per_hour} and {burst}")
        self.per_hour = per_hour
        self.burst = burst
        self.interval = 3600.0 / per_hour
        self._clock = clock
        self._tokens: dict[str, tuple[float, float]] = {}  # kind -> (tokens, at)
        self._lock = threading.Lock()

    def _level(self, kind: str, now: float) -> float:
        tokens, at = self._tokens.get(kind, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.interval)

    def take(self, kind: str) -> float | None:
        """Take a start of `kind`: None when allowed, else the seconds until the next one is."""
        with self._lock:
            now = self._clock()
            tokens = self._level(kind, now)
            if tokens >= 1.0:
                self._tokens[kind] = (tokens - 1.0, now)
                return None
            self._tokens[kind] = (tokens, now)
            return (1.0 - tokens) * self.interval

    def give_back(self, kind: str) -> None:
        """Return a token taken for a start that did not happen (the kind was already running)."""
        with self._lock:
            now = self._clock()
            self._tokens[kind] = (min(float(self.burst), self._level(kind, now) + 1.0), now)
