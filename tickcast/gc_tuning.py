"""Garbage-collector settings for the long-running processes.

A full (generation 2) cyclic collection walks every live object; with the modules,
models, ClickHouse and Bytewax state of a running system that took 45-95 ms, holding the
GIL, which showed as the tail of SSE delivery and ingest latency. The flow's records are
dicts and tuples freed by reference counting, so cyclic collection has little to do:
freeze what start-up created (moved out of the collector's scans) and collect less often.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def tune_gc(*, threshold0: int = 50_000, threshold1: int = 50, threshold2: int = 100, collect: bool = True) -> None:
    """`collect`: a full collection first (~0.1-0.2 s after start-up), so that garbage is not
    frozen with the live objects; a process that ends soon (a replay) can skip it."""
    if collect:
        gc.collect()
    gc.freeze()
    gc.set_threshold(threshold0, threshold1, threshold2)
    log.info("gc: %d start-up objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())


_pause_lock = threading.Lock()
_pause_depth = 0  # regions in collection_paused() now open, across threads
_resume_to = False  # the collector's state when the first of them opened


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside: for code that allocates many short-lived objects which
    cannot form cycles and are freed before the region ends (a Kafka consume batch: ~10^5
    `Message` objects, which the collector tracks). Left on, each `threshold0` of them triggers
    a young-generation collection that scans them all, for nothing; their frees inside the
    region take the allocation count back down. Nested and concurrent regions (one per
    source thread) leave the collector as the first one found it once the last one ends."""
    global _pause_depth, _resume_to
    with _pause_lock:
        if _pause_depth == 0:
            _resume_to = gc.isenabled()
            gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause_depth -= 1
            if _pause_depth == 0 and _resume_to:
                gc.enable()


# --- collections moved to the flow's idle moments (live) -------------------------------------
#
# A live candle burst makes a few objects per symbol and record (the records' dicts, each
# symbol's input, features row, items and events) that all die by reference counting once the
# burst has gone through. With 10,000 symbols that is ~10^5 objects alive at once, so a young
# generation threshold of 50,000 started two to four collections inside every burst, each
# walking everything the burst had built so far (5-60 ms apiece, with nothing to free): ~90 ms
# of a 650 ms burst, and the part that grew faster than the symbol count (issue 21). Live
# processes raise the threshold so far that a burst does not reach it, and the live sources
# collect the young generation when the flow has nothing to do, when the burst's objects are
# already gone and a collection walks only what survived.

LIVE_THRESHOLD0 = 1_000_000  # a safety net: what a burst of ~10^5 symbols' objects stays under
IDLE_MIN_YOUNG = 2_000  # fewer young objects than this: not worth a collection yet
IDLE_QUIET_S = 0.005  # no activity for this long: the flow has nothing left to run


class IdleCollector:
    """`touch()` whenever the flow works (a source delivered, a stateful step's activation
    started or ended, the live event sink wrote), `due()` when a stateful step says whether it
    has a notification due now; `quiet()` when a live source's poll found nothing.

    A poll that finds nothing after `quiet_s` without any activity, and no notification due,
    means the worker is idle: a step with input waiting would have started within
    microseconds of the last one ending.
    Then, when at least `min_young` objects wait in the young generation, the collector runs
    as CPython's own policy would (the oldest generation whose count is over its threshold),
    only now rather than inside the next burst. Nothing runs while collection is disabled
    (`collection_paused`, tests). Time is `time.monotonic`; a float store per call."""

    def __init__(self, *, min_young: int = IDLE_MIN_YOUNG, quiet_s: float = IDLE_QUIET_S) -> None:
        self.min_young = min_young
        self.quiet_s = quiet_s
        self.collections = 0  # idle collections run (tests, logs)
        self._last_activity = time.monotonic()
        self._due: set[int] = set()  # ids of the steps with a notification due now (`due`)

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    def polled(self, delivered: bool) -> None:
        """A live source's poll: `touch` when it delivered, `quiet` when it found nothing."""
        if delivered:
            self.touch()
        else:
            self.quiet()

    def due(self, step: object, due_now: bool) -> None:
        """Whether `step` (a stateful step's logic) has work due now: Bytewax runs a notification
        that is due "now" tens of milliseconds later (a candle burst's deferred side work, after
        the model stage), and the flow is not idle before it has."""
        if due_now:
            self._due.add(id(step))
        else:
            self._due.discard(id(step))

    def quiet(self) -> None:
        if self._due or time.monotonic() - self._last_activity < self.quiet_s or not gc.isenabled():
            return
        counts = gc.get_count()
        if counts[0] < self.min_young:
            return
        gc.collect(_due_generation(counts, gc.get_threshold()))
        self.collections += 1


def _due_generation(counts: tuple[int, int, int], thresholds: tuple[int, ...]) -> int:
    """The generation CPython's automatic collection would take now (ignoring threshold0: the
    caller decided a young collection is due): the oldest one whose count exceeds its threshold."""
    if counts[1] >= thresholds[1]:
        return 2 if counts[2] >= thresholds[2] else 1
    return 0


idle_collector = IdleCollector()  # one per process: every live source and stateful step reports to it
