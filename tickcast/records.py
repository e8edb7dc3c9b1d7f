"""Decoding and validation of input records (DESIGN §3).

`decode_record` never raises for bad input: it returns a `Rejection` naming the
reason, so one malformed record cannot stop the flow (Bytewax kills the whole
dataflow on any exception in user code). Every field's wrong value — wrong JSON type,
out of range, not UTF-8, named twice — is refused with a reason that names the field
and the form expected, and the work per record is bounded by `max_record_bytes`.

Reasons start with a word the `rejected_records` metric counts by: the field
(`'score' must be …`) or, for the record-level rules, `too_large`, `duplicate_key`,
`future` and `key_mismatch`.
"""

from __future__ import annotations

import hashlib
import json
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
# Defaults of INGEST_MAX_RECORD_BYTES and INGEST_MAX_FUTURE_MS (tickcast/settings.py).
MAX_RECORD_BYTES = 65_536
MAX_FUTURE_MS = 60_000
MAX_ID_CHARS = 128
INPUT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet")  # the record files replay and backfill read
MAX_DEPTH = 254  # nesting levels of objects/arrays: orjson writes no deeper
SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$")
PROVIDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f]")

Kind = Literal["tick", "candle", "control"]

TICK_FIELDS = ("symbol", "ts", "score", "polarity", "provider", "meta", "id", "ingest_ts")
CANDLE_FIELDS = ("symbol", "interval", "open_time", "close_time", "open", "high", "low", "close", "volume", "ingest_ts")
# Every member name the contract reads: one of them named twice in a record is refused
# (orjson, like most parsers, would silently keep the last value).
CONTROL_FIELDS = ("_control", "provider", "command", "id", "at", "by", "reason")  # trading controls too
FIELD_NAMES = tuple(dict.fromkeys((*CONTROL_FIELDS, *TICK_FIELDS, *CANDLE_FIELDS)))
KIND_FIELDS: dict[Kind, tuple[str, ...]] = {
    "tick": TICK_FIELDS,
    "candle": CANDLE_FIELDS,
    "control": CONTROL_FIELDS,
}


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


class InvalidField(Exception):
    """A field breaks the record contract; the message says which and how (the rejection reason)."""


def is_provider_name(name: str) -> bool:
    """Is `name` a well-formed provider name (what a tick's `provider` must be)?"""
    return PROVIDER_RE.fullmatch(name) is not None


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
    key: bytes | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_future_ms: int = MAX_FUTURE_MS,
    wall_ms: int | None = None,
) -> tuple[Kind, dict[str, Any]] | Rejection:
    """Parse and validate one record.

    `default_ingest` says what `ingest_ts` a record without one gets: "now" for
    live input (the system sees it now), "event" for files (taken as ingested at
    its event time, so a replay is deterministic).

    `key`: the Kafka message key, if any; a tick or candle must be keyed by its symbol.
    `max_record_bytes`: the largest JSON payload taken (a dict counts as its compact JSON).
    `max_future_ms`: how far the event time (`ts`, a candle's `close_time`) may lie after
    the record's `ingest_ts`; with `wall_ms` (live flows), how far `ingest_ts` itself may
    lie after the wall clock.
    """
    parsed = _parse(raw, source, now_ms, max_record_bytes)
    if isinstance(parsed, Rejection):
        return parsed
    obj, payload = parsed
    kind = record_kind(obj)
    try:
        if kind is not None and payload.raw is not obj:  # text: a member may be named twice
            duplicate = _duplicated_field(payload.raw, obj, kind)
            if duplicate is not None:
                raise InvalidField(duplicate_reason(duplicate))
        if kind == "tick":
            record = _tick(obj, now_ms, default_ingest, pos_threshold)
            _check_record(record, record["ts"], "ts", key, max_future_ms, wall_ms)
            return "tick", record
        if kind == "candle":
            record = _candle(obj, now_ms, default_ingest)
            _check_record(record, record["close_time"], "close_time", key, max_future_ms, wall_ms)
            return "candle", record
        if kind == "control":
            return "control", _control(obj)
        raise InvalidField("unknown record kind: a tick needs 'score', a candle needs 'open_time'/'close_time'")
    except InvalidField as exc:
        provider = obj.get("provider")
        return Rejection(source, str(exc), payload.text(), now_ms, provider if isinstance(provider, str) else None)


class _Payload:
    """The record as it arrived, turned into text only if it is refused."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def text(self) -> str:
        raw = self.raw
        if isinstance(raw, str):
            return raw
        if isinstance(raw, (bytes, bytearray, memoryview)):
            return bytes(raw).decode("utf-8", "replace")
        return _dump(raw)


def _parse(raw: Any, source: str, now_ms: int, max_record_bytes: int) -> tuple[dict[str, Any], _Payload] | Rejection:
    """(the record's JSON object, its payload) or the refusal of a record that is not one."""
    if isinstance(raw, dict):
        try:
            text = _json(raw)
        except _LoneSurrogates:  # a str of the dict that no UTF-8 text (and no stored row) can hold
            return Rejection(source, _SURROGATES, _dump(raw), now_ms)
        if text is None:
            return Rejection(source, _TOO_DEEP, _dump(raw), now_ms)
        if len(text) > max_record_bytes:
            return Rejection(source, _too_large(len(text), max_record_bytes), text.decode(), now_ms)
        return raw, _Payload(raw)
    if raw is None or (isinstance(raw, (bytes, bytearray, memoryview, str)) and not len(raw)):
        return Rejection(source, "empty payload: a record is one JSON object", "", now_ms)
    if isinstance(raw, str):
        size = len(raw) if len(raw) * 4 <= max_record_bytes else len(raw.encode("utf-8", "surrogatepass"))
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        size = len(raw)
    else:
        return Rejection(source, f"expected a JSON object, got {_show(raw)}", _dump(raw), now_ms)
    payload = _Payload(raw)
    if size > max_record_bytes:
        return Rejection(source, _too_large(size, max_record_bytes), payload.text(), now_ms)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = _TOO_DEEP if str(exc).startswith("depth limit exceeded") else _json_error(raw, exc)
        return Rejection(source, reason, payload.text(), now_ms)
    if not isinstance(obj, dict):
        return Rejection(source, f"expected a JSON object, got {_show(obj)}", payload.text(), now_ms)
    if size > MAX_DEPTH and _brackets(raw) > MAX_DEPTH and _json(obj) is None:  # orjson reads 1024 levels
        return Rejection(source, _TOO_DEEP, payload.text(), now_ms)
    return obj, payload


_TOO_DEEP = f"too_deep: the record nests objects/arrays more than {MAX_DEPTH} levels deep"


def _brackets(raw: bytes | bytearray | memoryview | str) -> int:
    """An upper bound of the nesting depth of a JSON text."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    return data.count(b"{") + data.count(b"[")


class _LoneSurrogates(ValueError):
    """A dict record holds a str with lone surrogates (Python's json module makes them from
    "\\ud800" escapes): not UTF-8, so no JSON text, id hash or stored row can hold it."""


def _json(obj: Any) -> bytes | None:
    """`obj` as compact JSON (values JSON has no type for as their str()), or None when it
    nests deeper than MAX_DEPTH. Raises `_LoneSurrogates` when a str in it is not UTF-8."""
    try:
        return orjson.dumps(obj, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        if "Recursion" in str(exc):
            return None
        if "surrogates" in str(exc):
            raise _LoneSurrogates from None
    try:  # ints past 64 bits (a Python dict): the standard library writes them
        return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):
        return _dump(obj).encode()


def _too_large(size: int, limit: int) -> str:
    return f"too_large: the record is {size} bytes of JSON; the limit is {limit} (INGEST_MAX_RECORD_BYTES)"


def _json_error(raw: bytes | bytearray | memoryview | str, exc: orjson.JSONDecodeError) -> str:
    """'invalid JSON[ in <field>]: …', or the field (and byte offset) of bytes that are not UTF-8."""
    if isinstance(raw, str):
        if _SURROGATE_RE.search(raw):
            return _SURROGATES
        data = raw.encode()
    else:
        data = bytes(raw)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            where = _field_at(data, err.start)
            place = f"'{where}' holds" if where else "the payload holds"
            return f"{place} bytes that are not UTF-8 (at byte {err.start}); send UTF-8 text"
    # orjson's position counts characters: the same as bytes for ASCII text
    where = _field_at(data, exc.pos) if 0 < exc.pos < len(data) and data.isascii() else None
    return f"invalid JSON in '{where}': {exc}" if where else f"invalid JSON: {exc}"


_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SURROGATES = "the payload holds lone surrogates, which are not UTF-8; send UTF-8 text"
# A JSON string (group 1), then (group 2) the colon that makes it a member name; or a bracket.
_TOKEN_RE = re.compile(rb'("(?:[^"\\]|\\.)*")(\s*:)?|[{}\[\]]', re.DOTALL)


def _field_at(data: bytes, offset: int) -> str | None:
    """The top-level member whose value spans byte `offset`, if the text around it tells."""
    depth, name, current = 0, None, None
    for match in _TOKEN_RE.finditer(data, 0, offset):
        token = match.group(1)
        if token is not None:
            if depth == 1 and match.group(2):
                name = token
            continue
        depth += 1 if match.group() in (b"{", b"[") else -1
    if depth >= 1 and name is not None:
        try:
            current = orjson.loads(name)
        except orjson.JSONDecodeError:
            return None
    return current if isinstance(current, str) and len(current) <= 64 else None


def _duplicated_field(raw: bytes | bytearray | memoryview | str, obj: dict[str, Any], kind: Kind) -> str | None:
    """A field of `kind` named twice among the record's members, or None."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if names_unique(data, obj) or fields_unique(data, [obj], KIND_FIELDS[kind]):
        return None
    names = KIND_FIELDS[kind]
    return next((name for _, name in duplicated_fields(data, 1) if name in names), None)


def names_unique(data: bytes, parsed: Any) -> bool:
    """True when the valid JSON text `data` (parsed: `parsed`) names no member twice in any
    object; False when it may (then `duplicated_fields` reads the names off the text).

    In valid JSON a member name ends with a quote, optional whitespace, a colon, and a quote
    inside a string is escaped. So when no quote is followed by whitespace, the text holds at
    least as many `":` as member names (names spelled with escapes too), and a count equal
    to the members of the parsed tree means the parser dropped no name: no duplicate."""
    if parsed.__class__ is dict and data.count(b"{") == 1 and b"[" not in data:
        members = len(parsed)  # a flat object (a candle): no tree to walk
    else:
        members = _members(parsed)
    return data.count(b'":') == members and _QUOTE_GAP_RE.search(data) is None


_QUOTE_GAP_RE = re.compile(rb'"[ \t\n\r]')


def fields_unique(data: bytes, records: list[Any], names: tuple[str, ...]) -> bool:
    """True when none of `names` can be named twice in any of `records` (the objects parsed
    from `data`): each `"name"` in the text at most as often as records have the member,
    and no `\\u00` escape (the only way to spell a name's letters otherwise). The second
    cheap test, for texts `names_unique` cannot clear (blanks after quotes: pretty-printed)."""
    if b"\\u00" in data:
        return False
    for name in names:
        token = f'"{name}"'.encode()
        if data.count(token) > sum(1 for r in records if r.__class__ is dict and name in r):
            return False
    return True


def _members(root: Any) -> int:
    """Members of every object in a parsed JSON tree (iterative: orjson nests to 1024)."""
    n = 0
    todo = [root]
    for value in todo:  # grows while it is walked
        if value.__class__ is dict:
            n += len(value)
            value = value.values()
        elif value.__class__ is not list:
            continue
        for v in value:
            if v.__class__ is dict or v.__class__ is list:
                todo.append(v)
    return n


def duplicate_reason(name: str) -> str:
    return f"duplicate_key: '{name}' is named more than once; a record names each field once"


def duplicated_fields(data: bytes, depth: int, member: str | None = None) -> list[tuple[int, str]]:
    """(index, name) of each contract field named twice in an object at nesting `depth` of
    the valid JSON text `data` (1: the top-level object; 2: the objects of a top-level
    array; 3: those of `{"ticks": [...]}`), objects counted in order from 0. With `member`,
    only objects inside the value of that member of the top-level object count."""
    out: list[tuple[int, str]] = []
    level, index = 0, -1
    names: set[bytes] = set()
    wanted = None if member is None else orjson.dumps(member)
    top: bytes | None = None  # the top-level member whose value is being read
    for match in _TOKEN_RE.finditer(data):
        token = match.group(1)
        if token is not None:
            if match.group(2) and (level == depth or level == 1):
                if b"\\" in token:  # spelled with escapes: compare the names they spell
                    token = orjson.dumps(orjson.loads(token))
                if level == 1:
                    top = token
                if level == depth and (wanted is None or top == wanted):
                    if token in names:
                        name = orjson.loads(token)
                        if name in FIELD_NAMES and (index, name) not in out:
                            out.append((index, name))
                    names.add(token)
            continue
        if match.group() in (b"{", b"["):
            level += 1
            if level == depth and match.group() == b"{" and (wanted is None or top == wanted):
                index += 1
                names = set()
        else:
            level -= 1
    return out


def _dump(obj: Any) -> str:
    try:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # also orjson's nesting limit
        try:
            return repr(obj)
        except (RecursionError, ValueError):
            return f"<unprintable {type(obj).__name__}>"


def _show(value: Any, limit: int = 60) -> str:
    """A short description of a wrong value, for reasons (bounded, never raises)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # ints past Python's 4300-digit repr limit
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _field(obj: dict[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidField(f"missing field '{name}'")
    return obj[name]


def _int_ms(obj: dict[str, Any], name: str) -> int:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidField(f"'{name}' must be an integer epoch-milliseconds timestamp, got {_show(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise InvalidField(f"'{name}' must be an integer epoch-milliseconds timestamp, got {_show(value)}")
        value = int(value)
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise InvalidField(f"'{name}'={_show(value)} is not epoch milliseconds between years 2000 and 2100")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidField(f"'{name}' must be a number, got {_show(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        value = math.inf
    if not math.isfinite(value):
        raise InvalidField(f"'{name}' must be finite, got {_show(value)}")
    return value


_VALID_NAMES: dict[re.Pattern[str], set[str]] = {}  # symbols and providers repeat endlessly


def valid_name(value: object, pattern: re.Pattern[str]) -> bool:
    """A string matching `pattern` (SYMBOL_RE, PROVIDER_RE); the names seen valid are kept
    (bounded), as they repeat in every batch. Every decoder checks names through this."""
    known = _VALID_NAMES.setdefault(pattern, set())
    if value.__class__ is str and value in known:
        return True
    if not isinstance(value, str) or not pattern.fullmatch(value):  # match() lets "$" pass a trailing "\n"
        return False
    if len(known) < 100_000:
        known.add(value)
    return True


def valid_names(names: set[str], pattern: re.Pattern[str]) -> set[str]:
    """The members of `names` (strs) that `valid_name` accepts: the known ones by one set
    intersection, only the others one by one (a batch's symbols are mostly known)."""
    valid = names & _VALID_NAMES.setdefault(pattern, set())
    if len(valid) < len(names):
        valid |= {s for s in names - valid if valid_name(s, pattern)}
    return valid


def checked_name(obj: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    """`obj[name]`, a string matching `pattern` (SYMBOL_RE, PROVIDER_RE); InvalidField otherwise."""
    value = _field(obj, name)
    if not valid_name(value, pattern):
        raise InvalidField(f"'{name}' must be a short identifier like XRPUSDT, got {_show(value)}")
    return value


def _ingest(obj: dict[str, Any], now_ms: int, event_ts: int, default_ingest: str) -> int:
    if obj.get("ingest_ts") is not None:
        return _int_ms(obj, "ingest_ts")
    return event_ts if default_ingest == "event" else now_ms


def meta_text(value: Any) -> str:
    """A tick's `meta` as stored: compact JSON of the object ("{}" when missing or empty).
    Raises `InvalidField` unless it is a JSON object or a string holding one (null and "" are
    none)."""
    if value is None or (value.__class__ is str and not value):
        return "{}"
    meta = value
    if isinstance(meta, str):  # columnar files (Parquet) carry meta as a JSON string
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            raise InvalidField("'meta' must be a JSON object (or a string holding one)") from None
    if not isinstance(meta, dict):
        raise InvalidField(f"'meta' must be a JSON object, got {_show(meta)}")
    if not meta:
        return "{}"
    try:
        return orjson.dumps(meta).decode()
    except TypeError:  # orjson's nesting limit, or (dict input) a value JSON cannot hold
        raise InvalidField(f"'meta' must be a JSON object nested at most {MAX_DEPTH} levels deep") from None


def _tick(obj: dict[str, Any], now_ms: int, default_ingest: str, pos_threshold: float) -> dict[str, Any]:
    symbol = checked_name(obj, "symbol", SYMBOL_RE)
    ts = _int_ms(obj, "ts")
    score = _number(obj, "score")
    if not -1.0 <= score <= 1.0:
        raise InvalidField(f"'score' must be in [-1, 1], got {score}")
    provider = checked_name(obj, "provider", PROVIDER_RE)
    polarity = obj.get("polarity")
    if polarity is None:
        polarity = 1 if score > pos_threshold else (-1 if score < -pos_threshold else 0)
    elif isinstance(polarity, bool) or not isinstance(polarity, (int, float)) or polarity not in (-1, 0, 1):
        raise InvalidField(f"'polarity' must be -1, 0 or 1, got {_show(polarity)}")
    meta = meta_text(obj.get("meta"))
    rid = obj.get("id")
    if rid is None:
        rid = tick_id(provider, symbol, ts, score)
    elif not isinstance(rid, str) or not 0 < len(rid) <= MAX_ID_CHARS or _CONTROL_CHARS_RE.search(rid):
        raise InvalidField(
            f"'id' must be a non-empty string of at most {MAX_ID_CHARS} characters without control "
            f"characters, got {_show(rid)}"
        )
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
    symbol = checked_name(obj, "symbol", SYMBOL_RE)
    interval = _field(obj, "interval")
    if interval.__class__ is not str or interval not in INTERVAL_MS:
        raise InvalidField(f"unknown interval {_show(interval)}: 'interval' must be one of {', '.join(INTERVAL_MS)}")
    step = INTERVAL_MS[interval]
    open_time = _int_ms(obj, "open_time")
    close_time = _int_ms(obj, "close_time")
    if close_time != open_time + step:
        raise InvalidField(f"close_time must be open_time + {interval} ({open_time + step}), got {close_time}")
    if open_time % step:
        raise InvalidField(f"open_time {open_time} is not aligned to a {interval} boundary")
    prices = {k: _number(obj, k) for k in ("open", "high", "low", "close")}
    volume = _number(obj, "volume")
    for k, price in prices.items():
        if price <= 0:
            raise InvalidField(f"'{k}' must be a positive number (prices must be positive), got {price}")
    o, h, lo, c = prices.values()
    if h < lo:
        raise InvalidField(f"high < low ({h} < {lo}): 'high' must be >= 'low'")
    if h < max(o, c) or lo > min(o, c):
        raise InvalidField(
            f"open/close outside [low, high]: 'open' and 'close' must lie within ['low', 'high'], "
            f"got open={o} close={c} low={lo} high={h}"
        )
    if volume < 0:
        raise InvalidField(f"'volume' must be a number >= 0, got {volume}")
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


def _check_record(
    record: dict[str, Any], event_ts: int, event_field: str, key: bytes | None, max_future_ms: int, wall_ms: int | None
) -> None:
    """The rules that relate a decoded record to its envelope: Kafka key, ingest time, clock."""
    if key is not None and key != record["symbol"].encode():
        raise InvalidField(
            f"key_mismatch: the Kafka key {_show(bytes(key))} is not the record's 'symbol' {record['symbol']!r}; "
            "producers key each record by its symbol"
        )
    ingest = record["ingest_ts"]
    if event_ts - ingest > max_future_ms:
        raise InvalidField(
            f"future: '{event_field}'={event_ts} is {event_ts - ingest} ms after its ingest_ts={ingest}; "
            f"at most {max_future_ms} ms is allowed (INGEST_MAX_FUTURE_MS): check the sender's clock"
        )
    if wall_ms is not None and ingest - wall_ms > max_future_ms:
        raise InvalidField(
            f"future: ingest_ts={ingest} is {ingest - wall_ms} ms ahead of this system's clock; at most "
            f"{max_future_ms} ms is allowed (INGEST_MAX_FUTURE_MS): check the producer's clock"
        )


_TRADING_COMMANDS = ("halt", "resume", "flatten", "reset_drawdown")


def _control(obj: dict[str, Any]) -> dict[str, Any]:
    action = obj["_control"]
    if action == "enable_provider":
        return {"action": action, "provider": checked_name(obj, "provider", PROVIDER_RE)}
    if action == "trading":
        return _trading_control(obj)
    raise InvalidField(f"unknown control action {_show(action)}; expected 'enable_provider' or 'trading'")


def _trading_control(obj: dict[str, Any]) -> dict[str, Any]:
    """An admin command for the trading stage (dataflows/trading): halt, resume, flatten, reset_drawdown."""
    command = obj.get("command")
    if command not in _TRADING_COMMANDS:
        raise InvalidField(f"'command' must be one of {', '.join(_TRADING_COMMANDS)}, got {_show(command)}")
    rid = _field(obj, "id")
    if not isinstance(rid, str) or not 0 < len(rid) <= 128:
        raise InvalidField(f"'id' must be a non-empty string of at most 128 characters, got {_show(rid)}")
    texts = {k: obj.get(k) or "" for k in ("by", "reason")}
    for key, value in texts.items():
        if not isinstance(value, str) or len(value) > 500:
            raise InvalidField(f"'{key}' must be a string of at most 500 characters, got {_show(value)}")
    return {"action": "trading", "command": command, "id": rid, "at": _int_ms(obj, "at"), **texts}


def parse_time(text: str) -> int:
    """An ISO 8601 time (no zone: UTC) as epoch ms (the CLI's and the API's --start/--end)."""
    from datetime import UTC, datetime

    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2025-11-21T00:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)
