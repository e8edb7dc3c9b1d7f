"""Decode + validate + provider gate: the first stateful step, keyed by source partition.

Keyed by partition (not by provider) so each partition's records keep their
ingest order on the way to the per-symbol step. A provider whose ticks fail
validation `disable_streak` times in a row is disabled until an
`{"_control": "enable_provider"}` record re-enables it (DESIGN §4).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bytewax.operators import StatefulBatchLogic

from dataflows.outputs import Out
from dataflows.snapshot import freeze, thaw
from dataflows.sources import RawBatch
from tickcast import metrics
from tickcast.records import Rejection, decode_record

# Output item shapes of this step (wrapped as (partition_key, item) by Bytewax):
#   ("sym", symbol, [("tick"|"candle", record_dict), ...])   records of one symbol, in order
#   ("rows", "rejected_records", [row, ...])
#   ("event", "events", data, None, ts_ms)


@dataclass
class GateState:
    streak: dict[str, int] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    enable_seen: dict[str, int] = field(default_factory=dict)


# An admin "enable provider" arrives through one input partition, but every partition's
# gate in this process must hear it: provider -> time (ns) of the latest request.
_ENABLE_REQUESTS: dict[str, int] = {}


@dataclass(frozen=True)
class DecodeConfig:
    disable_streak: int = 5
    pos_threshold: float = 0.0
    recovery: bool = True


def rejected_row(rej: Rejection) -> dict[str, Any]:
    """Count a refusal and return its `rejected_records` row (every step refuses through this)."""
    metrics.REJECTED_RECORDS.labels(*rej.metric_labels).inc()
    return rej.row()


def _reject(rej: Rejection, out: list[Any]) -> None:
    out.append(("table", "rejected_records", rejected_row(rej)))


class DecodeLogic(StatefulBatchLogic[RawBatch, tuple[Any, ...], GateState]):
    def __init__(self, config: DecodeConfig, state: GateState | None) -> None:
        self.config = config
        self.state = thaw(state) or GateState()

    def on_batch(self, values: list[RawBatch]) -> tuple[list[tuple[Any, ...]], bool]:
        out = Out()
        by_symbol: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        now_ms = int(time.time() * 1000)
        self._apply_enable_requests(out, now_ms)
        for batch in values:
            for source, payload, hint in batch:
                self._one(source, payload, hint, now_ms, by_symbol, out)
        out.extend(("sym", symbol, records) for symbol, records in by_symbol.items())
        if by_symbol:
            metrics.FLOW_LAST_ACTIVITY.set(time.time())
        return out.done(), StatefulBatchLogic.RETAIN

    def _one(
        self,
        source: str,
        payload: Any,
        hint: int | None,
        now_ms: int,
        by_symbol: dict[str, list[tuple[str, dict[str, Any]]]],
        out: list[Any],
    ) -> None:
        if source.startswith("kafka-error:"):
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
            _reject(Rejection(source, f"kafka consumer error: {text}", "", now_ms), out)
            return
        decoded = decode_record(
            payload,
            source=source,
            now_ms=hint if hint is not None else now_ms,
            default_ingest="now" if hint is not None else "event",
            pos_threshold=self.config.pos_threshold,
        )
        if isinstance(decoded, Rejection):
            if decoded.provider:
                self._failure(decoded.provider, decoded.received_ts, out)
            if decoded.provider:  # a tick (it names its provider) refused by validation
                metrics.SENTIMENT_INGEST_ERRORS.labels("invalid").inc()
            _reject(decoded, out)
            return
        kind, record = decoded
        if kind == "control":
            self._control(record, now_ms, out)
            return
        if kind == "tick":
            provider = record["provider"]
            if provider in self.state.disabled:
                metrics.SENTIMENT_INGEST_ERRORS.labels("provider_disabled").inc()
                _reject(Rejection.for_record(source, f"provider {provider!r} is disabled", record), out)
                return
            self.state.streak[provider] = 0
        by_symbol[record["symbol"]].append((kind, record))

    def _failure(self, provider: str, ts: int, out: list[Any]) -> None:
        streak = self.state.streak.get(provider, 0) + 1
        self.state.streak[provider] = streak
        if streak >= self.config.disable_streak and provider not in self.state.disabled:
            self.state.disabled.add(provider)
            metrics.PROVIDER_DISABLED.labels(provider).set(1)
            data = {"kind": "provider_disabled", "provider": provider, "failures": streak}
            out.append(("event", "events", data, None, ts))

    def _control(self, record: dict[str, Any], now_ms: int, out: list[Any]) -> None:
        _ENABLE_REQUESTS[record["provider"]] = time.time_ns()
        self._apply_enable_requests(out, now_ms)

    def _apply_enable_requests(self, out: list[Any], now_ms: int) -> None:
        for provider, requested in _ENABLE_REQUESTS.items():
            if requested <= self.state.enable_seen.get(provider, 0):
                continue
            self.state.enable_seen[provider] = requested
            self.state.streak[provider] = 0
            if provider in self.state.disabled:
                self.state.disabled.discard(provider)
                metrics.PROVIDER_DISABLED.labels(provider).set(0)
                out.append(("event", "events", {"kind": "provider_enabled", "provider": provider}, None, now_ms))

    def snapshot(self) -> GateState:
        return freeze(self.state, enabled=self.config.recovery)
