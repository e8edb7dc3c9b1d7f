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

log = logging.getLogger(__name__)


def tune_gc(*, threshold0: int = 50_000, threshold1: int = 50, threshold2: int = 100) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold0, threshold1, threshold2)
    log.info("gc: %d start-up objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold())
