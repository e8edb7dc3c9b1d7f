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
