"""Decoding and validation of input records (DESIGN §3).

`decode_record` never raises for bad input: it returns a `Rejection` naming the
reason, so one malformed record cannot stop the flow (Bytewax kills the whole
dataflow on any exception in user code).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
# Event times outside this range are typos (seconds instead of ms, or µs).
MIN_TS_MS = 946_684_800_000  # 2000-01-01
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
MAX_PAYLOAD_CHARS = 65_536
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$")
_PROVIDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Kind = Literal["tick", "candle", "control"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the system refused; kept in `rejected_records`."""

    source: str
    reason: str
    payload: str
    received_ts: int
    provider: str | None = None

    @classmethod
    def for_record(cls, source: str, reason: str, record: dict[str, Any]) -> Rejection:
        """A refusal of an already decoded record (duplicate, late, disabled provider, …)."""
        payload = orjson.dumps({k: v for k, v in record.items() if k != "weight"}).decode()
        return cls(source, reason, payload, record["ingest_ts"], record.get("provider"))

    @property
    def metric_labels(self) -> tuple[str, str]:
        """(source kind, first word of the reason): bounded label values, unlike the reason text."""
        return self.source.split(":")[0], self.reason.split(":")[0].split(" ")[0][:40]

    @property
    def record_id(self) -> str:
        # Natural key: the same payload rejected twice for the same reason is one row.
        return hashlib.sha1(f"{self.source}|{self.reason}|{self.payload}".encode()).hexdigest()

    def row(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "source": self.source,
            "reason": self.reason,
            "payload": self.payload[:MAX_PAYLOAD_CHARS],
            "provider": self.provider or "",
            "received_ts": self.received_ts,
        }


class _Invalid(Exception):
    pass


def tick_id(provider: str, symbol: str, ts: int, score: float) -> str:
    """Default tick id: sha1(provider|symbol|ts|score) (DESIGN §3)."""
    return hashlib.sha1(f"{provider}|{symbol}|{ts}|{score!r}".encode()).hexdigest()


def record_kind(obj: dict[str, Any]) -> Kind | None:
    if "_control" in obj:
        return "control"
    if "score" in obj:
        return "tick"
    if "open_time" in obj or "close_time" in obj or "interval" in obj:
        return "candle"
    return None


def decode_record(
    raw: bytes | str | dict[str, Any],
    *,
    source: str,
    now_ms: int,
    default_ingest: Literal["now", "event"] = "now",
    pos_threshold: float = 0.0,
) -> tuple[Kind, dict[str, Any]] | Rejection:
    """Parse and validate one record.

    `default_ingest` says what `ingest_ts` a record without one gets: "now" for
    live input (the system sees it now), "event" for files (taken as ingested at
    its event time, so a replay is deterministic).
    """
    if isinstance(raw, dict):
        obj: Any = raw
        text = None
    else:
        text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return Rejection(source, f"invalid JSON: {exc}", text, now_ms)
    if not isinstance(obj, dict):
        return Rejection(source, f"expected a JSON object, got {type(obj).__name__}", _dump(obj, text), now_ms)
    kind = record_kind(obj)
    provider = obj.get("provider") if isinstance(obj.get("provider"), str) else None
    try:
        if kind == "tick":
            return "tick", _tick(obj, now_ms, default_ingest, pos_threshold)
        if kind == "candle":
            return "candle", _candle(obj, now_ms, default_ingest)
        if kind == "control":
            return "control", _control(obj)
        raise _Invalid("unknown record kind: a tick needs 'score', a candle needs 'open_time'/'close_time'")
    except _Invalid as exc:
        return Rejection(source, str(exc), _dump(obj, text), now_ms, provider)


def _dump(obj: Any, text: str | None) -> str:
    if text is not None:
        return text
    try:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return repr(obj)


def _field(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise _Invalid(f"missing field '{name}'")
    return obj[name]


def _int_ms(obj: dict[str, Any], name: str) -> int:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"'{name}' must be an integer epoch-milliseconds timestamp, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _Invalid(f"'{name}' must be an integer epoch-milliseconds timestamp, got {value!r}")
        value = int(value)
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise _Invalid(f"'{name}'={value} is not epoch milliseconds between years 2000 and 2100")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"'{name}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise _Invalid(f"'{name}' must be finite, got {value!r}")
    return value


_VALID_NAMES: dict[re.Pattern[str], set[str]] = {}  # symbols and providers repeat endlessly


def _name(obj: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = _field(obj, name)
    known = _VALID_NAMES.setdefault(pattern, set())
    if value.__class__ is str and value in known:
        return value
    if not isinstance(value, str) or not pattern.fullmatch(value):  # match() lets "$" pass a trailing "\n"
        raise _Invalid(f"'{name}' must be a short identifier like XRPUSDT, got {value!r}")
    if len(known) < 100_000:
        known.add(value)
    return value


def _ingest(obj: dict[str, Any], now_ms: int, event_ts: int, default_ingest: str) -> int:
    if obj.get("ingest_ts") is not None:
        return _int_ms(obj, "ingest_ts")
    return event_ts if default_ingest == "event" else now_ms


def meta_text(value: Any) -> str:
    """A tick's `meta` as stored: compact JSON of the object ("{}" when missing or empty).
    Raises `_Invalid` unless it is a JSON object or a string holding one."""
    meta = value or {}
    if isinstance(meta, str):  # columnar files (Parquet) carry meta as a JSON string
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            raise _Invalid("'meta' must be a JSON object (or a string holding one)") from None
    if not isinstance(meta, dict):
        raise _Invalid(f"'meta' must be a JSON object, got {type(meta).__name__}")
    return orjson.dumps(meta).decode() if meta else "{}"


def _tick(obj: dict[str, Any], now_ms: int, default_ingest: str, pos_threshold: float) -> dict[str, Any]:
    symbol = _name(obj, "symbol", _SYMBOL_RE)
    ts = _int_ms(obj, "ts")
    score = _number(obj, "score")
    if not -1.0 <= score <= 1.0:
        raise _Invalid(f"'score' must be in [-1, 1], got {score}")
    provider = _name(obj, "provider", _PROVIDER_RE)
    polarity = obj.get("polarity")
    if polarity is None:
        polarity = 1 if score > pos_threshold else (-1 if score < -pos_threshold else 0)
    elif isinstance(polarity, bool) or polarity not in (-1, 0, 1):
        raise _Invalid(f"'polarity' must be -1, 0 or 1, got {polarity!r}")
    meta = meta_text(obj.get("meta"))
    rid = obj.get("id")
    if rid is None:
        rid = tick_id(provider, symbol, ts, score)
    elif not isinstance(rid, str) or not 0 < len(rid) <= 128:
        raise _Invalid(f"'id' must be a non-empty string of at most 128 characters, got {rid!r}")
    return {
        "id": rid,
        "symbol": symbol,
        "ts": ts,
        "score": score,
        "polarity": int(polarity),
        "provider": provider,
        "meta": meta,
        "ingest_ts": _ingest(obj, now_ms, ts, default_ingest),
    }


def _candle(obj: dict[str, Any], now_ms: int, default_ingest: str) -> dict[str, Any]:
    symbol = _name(obj, "symbol", _SYMBOL_RE)
    interval = _field(obj, "interval")
    if interval not in INTERVAL_MS:
        raise _Invalid(f"unknown interval {interval!r}; expected one of {', '.join(INTERVAL_MS)}")
    step = INTERVAL_MS[interval]
    open_time = _int_ms(obj, "open_time")
    close_time = _int_ms(obj, "close_time")
    if close_time != open_time + step:
        raise _Invalid(f"close_time must be open_time + {interval} ({open_time + step}), got {close_time}")
    if open_time % step:
        raise _Invalid(f"open_time {open_time} is not aligned to a {interval} boundary")
    o, h, lo, c = (_number(obj, k) for k in ("open", "high", "low", "close"))
    volume = _number(obj, "volume")
    if min(o, h, lo, c) <= 0:
        raise _Invalid("prices must be positive")
    if h < lo:
        raise _Invalid(f"high < low ({h} < {lo})")
    if h < max(o, c) or lo > min(o, c):
        raise _Invalid(f"open/close outside [low, high]: open={o} close={c} low={lo} high={h}")
    if volume < 0:
        raise _Invalid(f"'volume' must be >= 0, got {volume}")
    return {
        "symbol": symbol,
        "interval": interval,
        "open_time": open_time,
        "close_time": close_time,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": volume,
        "ingest_ts": _ingest(obj, now_ms, close_time, default_ingest),
    }


_TRADING_COMMANDS = ("halt", "resume", "flatten", "reset_drawdown")


def _control(obj: dict[str, Any]) -> dict[str, Any]:
    action = obj["_control"]
    if action == "enable_provider":
        return {"action": action, "provider": _name(obj, "provider", _PROVIDER_RE)}
    if action == "trading":
        return _trading_control(obj)
    raise _Invalid(f"unknown control action {action!r}; expected 'enable_provider' or 'trading'")


def _trading_control(obj: dict[str, Any]) -> dict[str, Any]:
    """An admin command for the trading stage (dataflows/trading): halt, resume, flatten, reset_drawdown."""
    command = obj.get("command")
    if command not in _TRADING_COMMANDS:
        raise _Invalid(f"'command' must be one of {', '.join(_TRADING_COMMANDS)}, got {command!r}")
    rid = _field(obj, "id")
    if not isinstance(rid, str) or not 0 < len(rid) <= 128:
        raise _Invalid(f"'id' must be a non-empty string of at most 128 characters, got {rid!r}")
    texts = {k: obj.get(k) or "" for k in ("by", "reason")}
    for key, value in texts.items():
        if not isinstance(value, str) or len(value) > 500:
            raise _Invalid(f"'{key}' must be a string of at most 500 characters, got {value!r}")
    return {"action": "trading", "command": command, "id": rid, "at": _int_ms(obj, "at"), **texts}
