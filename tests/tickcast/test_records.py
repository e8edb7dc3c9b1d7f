"""Record validation (DESIGN §3): every bad-input class is refused with a reason, never raised."""

from __future__ import annotations

import hashlib
import json
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickcast import records
from tickcast.records import MAX_TS_MS, MIN_TS_MS, Rejection, decode_record, duplicated_fields

NOW = 1_763_683_300_000
TICK = {"symbol": "XRPUSDT", "ts": 1_763_683_200_123, "score": 0.42, "provider": "newsapi"}
CANDLE = {
    "symbol": "XRPUSDT",
    "interval": "1m",
    "open_time": 1_763_683_200_000,
    "close_time": 1_763_683_260_000,
    "open": 1.0,
    "high": 1.1,
    "low": 0.9,
    "close": 1.05,
    "volume": 10.0,
}


def test_tick_defaults() -> None:
    kind, rec = decode_record(TICK, source="t", now_ms=NOW)
    assert kind == "tick" and rec["polarity"] == 1 and rec["ingest_ts"] == NOW
    assert rec["id"] == hashlib.sha1(b"newsapi|XRPUSDT|1763683200123|0.42").hexdigest()
    kind, rec = decode_record({**TICK, "score": -0.1}, source="t", now_ms=NOW, default_ingest="event")
    assert rec["polarity"] == -1 and rec["ingest_ts"] == TICK["ts"]  # files: ingested at event time
    _, rec = decode_record({**TICK, "score": 0.1}, source="t", now_ms=NOW, pos_threshold=0.2)
    assert rec["polarity"] == 0
    _, rec = decode_record({**TICK, "ingest_ts": NOW - 5}, source="t", now_ms=NOW)
    assert rec["ingest_ts"] == NOW - 5  # a replayed record keeps its ingest_ts


def test_meta_as_a_json_string_is_accepted() -> None:
    _, rec = decode_record({**TICK, "meta": '{"url": "x"}'}, source="t", now_ms=NOW)
    assert rec["meta"] == '{"url":"x"}'


def test_candle_accepted_and_kind_from_fields() -> None:
    kind, rec = decode_record(CANDLE, source="c", now_ms=NOW, default_ingest="event")
    assert kind == "candle" and rec["ingest_ts"] == CANDLE["close_time"]


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        ({"hello": 1}, "unknown record kind"),
        ({**TICK, "score": 1.5}, "'score' must be in [-1, 1]"),
        ({**TICK, "score": "0.4"}, "'score' must be a number"),
        ({**TICK, "score": float("nan")}, "'score' must be finite"),
        ({**TICK, "score": None}, "missing field 'score'"),
        ({k: v for k, v in TICK.items() if k != "provider"}, "missing field 'provider'"),
        ({**TICK, "ts": 1_763_683_200}, "epoch milliseconds"),
        ({**TICK, "ts": True}, "integer epoch-milliseconds"),
        ({**TICK, "polarity": 2}, "'polarity' must be -1, 0 or 1"),
        ({**TICK, "symbol": "bad symbol!"}, "'symbol' must be a short identifier"),
        ({**TICK, "symbol": "XRPUSDT\n"}, "'symbol' must be a short identifier"),  # re's "$" allows a final \n
        (
            b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.4,"provider":"newsapi\\n"}',
            "'provider' must be a short identifier",
        ),
        ({**TICK, "meta": [1]}, "'meta' must be a JSON object"),
        ({**TICK, "meta": "not json"}, "'meta' must be a JSON object"),
        ({**CANDLE, "interval": "7m"}, "unknown interval '7m'"),
        ({**CANDLE, "high": 0.5}, "high < low"),
        ({**CANDLE, "close": 2.0}, "open/close outside [low, high]"),
        ({**CANDLE, "close_time": CANDLE["close_time"] + 1}, "close_time must be open_time + 1m"),
        ({**CANDLE, "open_time": CANDLE["open_time"] + 1, "close_time": CANDLE["close_time"] + 1}, "not aligned"),
        ({**CANDLE, "volume": -1}, "'volume' must be a number >= 0"),
        ({**CANDLE, "open": float("inf")}, "must be finite"),
    ],
)
def test_bad_records_are_rejections_with_reasons(payload: object, fragment: str) -> None:
    result = decode_record(payload, source="s", now_ms=NOW)  # type: ignore[arg-type]
    assert isinstance(result, Rejection)
    assert fragment in result.reason
    row = result.row()
    assert row["reason"] == result.reason and row["source"] == "s" and row["payload"]
    # the same payload rejected again is the same row (idempotent dead letters)
    again = decode_record(payload, source="s", now_ms=NOW + 1)  # type: ignore[arg-type]
    assert isinstance(again, Rejection) and again.record_id == result.record_id


# ---------------------------------------------------------------------------
# every field, every wrong form (issue 15 item 5): a Rejection naming the field, never an exception


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


WRONG_VALUES = {
    "object": {},
    "nested object": {"a": [1, {"b": None}]},
    "array": [],
    "array of junk": [1, "x", None, [{}]],
    "true": True,
    "false": False,
    "huge int": 10**30,
    "negative huge int": -(10**30),
    "string of a number": "1",
    "string with a control character": "a\u0000b",
    "string with a newline": "XRPUSDT\n",
    "empty string": "",
    "long string": "x" * 5_000,
}
# What each field's reason says besides the field name (the expected form).
EXPECTED_FORM = {
    "symbol": ("short identifier",),
    "provider": ("short identifier",),
    "ts": ("epoch",),
    "ingest_ts": ("epoch",),
    "open_time": ("epoch",),
    "close_time": ("epoch",),
    "score": ("number", "in [-1, 1]"),
    "open": ("number", "must lie within"),
    "high": ("number", "must be >= 'low'"),
    "low": ("number", "must be >= 'low'", "must lie within"),
    "close": ("number", "must lie within"),
    "volume": ("number",),
    "polarity": ("-1, 0 or 1",),
    "meta": ("JSON object",),
    "id": ("non-empty string",),
    "interval": ("must be one of",),
}
# Values that are a legal form of some field: skip those pairs.
LEGAL = {
    ("meta", "object"),
    ("meta", "nested object"),
    ("meta", "empty string"),  # none, like null
    ("id", "string of a number"),
    ("symbol", "string of a number"),
    ("provider", "string of a number"),
    ("high", "huge int"),  # 1e30 is a price above open, close and low
    ("volume", "huge int"),
}


def _cases() -> list[tuple[str, str, str, object]]:
    out = []
    for kind, base in (("tick", TICK), ("candle", CANDLE)):
        fields = [*base, "ingest_ts"] + (["polarity", "meta", "id"] if kind == "tick" else [])
        for field in fields:
            for label, value in WRONG_VALUES.items():
                if (field, label) in LEGAL:
                    continue
                out.append((kind, field, label, value))
    return out


@pytest.mark.parametrize("as_bytes", [False, True], ids=["dict", "json"])
@pytest.mark.parametrize(("kind", "field", "label", "value"), _cases())
def test_every_wrong_value_of_every_field_is_refused_naming_the_field(
    kind: str, field: str, label: str, value: object, as_bytes: bool
) -> None:
    record = {**(TICK if kind == "tick" else CANDLE), field: value}
    payload = json.dumps(record).encode() if as_bytes else record  # json: ints past 64 bits too
    result = decode_record(payload, source="s", now_ms=NOW)  # never raises
    assert isinstance(result, Rejection), (field, label, result)
    assert f"'{field}'" in result.reason, result.reason
    assert any(form in result.reason for form in EXPECTED_FORM[field]), result.reason
    assert len(result.reason) < 400  # a 5,000-character value is shown cut short
    assert result.row()["payload"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({**CANDLE, "interval": {}}, "'interval' must be one of"),  # the TypeError of issue 15 item 5
        ({**CANDLE, "interval": []}, "'interval' must be one of"),
        (orjson.dumps({**CANDLE, "interval": {}}), "'interval' must be one of"),
        ({"_control": {}}, "unknown control action an object"),
        ({"_control": [1]}, "unknown control action an array"),
        ({"_control": "enable_provider", "provider": {}}, "'provider' must be a short identifier"),
        ({"_control": "enable_provider"}, "missing field 'provider'"),
        (b"", "empty payload"),
        (None, "empty payload"),
        (b"   ", "invalid JSON"),
        (b"null", "expected a JSON object, got null"),
        (b"[]", "expected a JSON object, got an array"),
        (b'"x"', "expected a JSON object, got 'x'"),
        (b"12", "expected a JSON object, got 12"),
        (12, "expected a JSON object, got 12"),
        ([{"symbol": "X"}], "expected a JSON object, got an array"),
        (b'{"symbol":"XRPUSDT","ts":1763683200123,"score":NaN,"provider":"p"}', "invalid JSON in 'score'"),
        (b'{"symbol":"XRPUSDT","ts":1763683200123,"score":Infinity,"provider":"p"}', "invalid JSON in 'score'"),
        (b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","meta":{"a":"\xff"}}', "'meta' holds"),
        (b'{"symbol":"XRP\xc3","ts":1763683200123,"score":0.1,"provider":"p"}', "'symbol' holds bytes"),
        ('{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"\ud800"}', "lone surrogates"),
        (
            b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","meta":' + b"[" * 2000,
            "too_deep: the record nests",
        ),
        (
            b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","meta":{"a":'
            + b"[" * 300
            + b"]" * 300
            + b"}}",
            "too_deep: the record nests objects/arrays more than 254",
        ),
        ({**TICK, "meta": {"a": _nested(300)}}, "too_deep: the record nests objects/arrays more than 254"),
        (
            {**TICK, "score": 2, "x": _nested(253)},
            "'score' must be in [-1, 1]",
        ),  # 254 levels with the record itself: fine
        (orjson.dumps({**TICK, "score": 2, "x": _nested(253)}), "'score' must be in [-1, 1]"),
        ({**TICK, "x": _nested(254)}, "too_deep"),  # in a field nobody reads, too: orjson could not write it
        (json.dumps({**TICK, "x": _nested(254)}).encode(), "too_deep"),
        ({**TICK, "meta": 0}, "'meta' must be a JSON object, got 0"),
        ({**TICK, "meta": False}, "'meta' must be a JSON object, got false"),
        ({**TICK, "meta": "null"}, "'meta' must be a JSON object, got null"),
        ({**TICK, "score": 10**400}, "'score' must be finite"),
        ({**TICK, "ts": 10**5000}, "'ts'=a int is not epoch milliseconds"),
        ({**TICK, "id": "a\u007fb"}, "without control characters"),
        # dict records (Python's json module turns "\\ud800" escapes into lone surrogates): no
        # UTF-8 text, id hash or stored row can hold them, whichever field has one
        ({**TICK, "id": "a\ud800b"}, "lone surrogates"),
        ({**TICK, "provider": "x\udfff"}, "lone surrogates"),
        ({**TICK, "meta": {"k": "\ud800"}}, "lone surrogates"),
        ({**TICK, "meta": {"\ud800": 1}}, "lone surrogates"),
        ({**CANDLE, "note": "\ud800"}, "lone surrogates"),
        ({"_control": "trading", "command": "halt", "id": "a\udfff", "at": 1}, "lone surrogates"),
        ({**TICK, "id": "x" * 129}, "at most 128 characters"),
        ({**TICK, "polarity": 1.5}, "'polarity' must be -1, 0 or 1"),
        ({**TICK, "polarity": float("nan")}, "'polarity' must be -1, 0 or 1"),
    ],
)
def test_malformed_payloads_are_rejections(payload: object, fragment: str) -> None:
    result = decode_record(payload, source="s", now_ms=NOW)  # type: ignore[arg-type]
    assert isinstance(result, Rejection), result
    assert fragment in result.reason, result.reason


def test_bad_utf8_is_refused_not_replaced() -> None:
    # Before: bytes were decoded with errors="replace" and the id "\ufffd" was stored.
    raw = b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","id":"a\xffb"}'
    result = decode_record(raw, source="s", now_ms=NOW)
    assert isinstance(result, Rejection) and result.reason.startswith("'id' holds bytes that are not UTF-8")
    assert "\ufffd" in result.payload  # the stored payload is readable text


# ---------------------------------------------------------------------------
# duplicated fields (item 8): orjson keeps the last value; the record is refused instead


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","symbol":"ETHUSDT"}', "symbol"),
        (b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","\\u0073ymbol":"ETHUSDT"}', "symbol"),
        (b'{"symbol":"XRPUSDT","ts":1763683200123,"ts":1763683200124,"score":0.1,"provider":"p"}', "ts"),
        (b'{"symbol": "XRPUSDT", "ts": 1763683200123, "score": 0.1, "provider": "p", "meta" : {}, "meta": {}}', "meta"),
        # a name followed by a blank hides from the '":' count; the gap sends it to the tokenizer
        (b'{"symbol" :"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","symbol":"ETHUSDT"}', "symbol"),
        (orjson.dumps(CANDLE)[:-1] + b',"close_time":1763683320000}', "close_time"),
        (orjson.dumps(CANDLE)[:-1] + b',"symbol":"ETHUSDT"}', "symbol"),
        (b'{"_control":"enable_provider","provider":"a","provider":"b"}', "provider"),
    ],
)
def test_a_field_named_twice_is_refused(raw: bytes, name: str) -> None:
    result = decode_record(raw, source="s", now_ms=NOW)
    assert isinstance(result, Rejection) and result.reason.startswith(f"duplicate_key: '{name}'"), result


@pytest.mark.parametrize(
    "raw",
    [
        # the same names inside meta, or as values, or unrelated duplicates: fine
        b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","meta":{"symbol":"A","ts":1}}',
        b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","meta":{"a":"\\"symbol\\""}}',
        b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","x":1,"x":2}',
        b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","meta":{"t":"\\u00e9"}}',
        b'{"symbol":"XRPUSDT","ts":1763683200123,"score":0.1,"provider":"p","open_time":1,"open_time":2}',
    ],
)
def test_no_false_duplicates(raw: bytes) -> None:
    assert decode_record(raw, source="s", now_ms=NOW)[0] == "tick"


def test_duplicated_fields_finds_records_in_batches() -> None:
    body = b'{"x":[{"ts":1,"ts":2}],"ticks":[{"ts":1},{"score":1,"\\u0073core":2},{"a":{"score":1},"score":3}]}'
    assert duplicated_fields(body, 3, "ticks") == [(1, "score")]
    assert duplicated_fields(b'[{"symbol":1},{"symbol":1,"symbol":2,"ts":1,"ts":1}]', 2) == [
        (1, "symbol"),
        (1, "ts"),
    ]


# ---------------------------------------------------------------------------
# size (item 9)


def test_record_size_is_bounded_for_every_payload_form() -> None:
    big = {**TICK, "meta": {"text": "x" * 70_000}}
    for payload in (big, orjson.dumps(big), orjson.dumps(big).decode()):
        result = decode_record(payload, source="s", now_ms=NOW)
        assert isinstance(result, Rejection) and result.reason.startswith("too_large: the record is 70")
        assert "INGEST_MAX_RECORD_BYTES" in result.reason
        assert len(result.row()["payload"]) == 65_536  # stored capped
    raw = orjson.dumps({**TICK, "meta": {"t": ""}})
    limit = len(raw)
    assert decode_record(raw, source="s", now_ms=NOW, max_record_bytes=limit)[0] == "tick"  # the limit itself is fine
    one_more = orjson.dumps({**TICK, "meta": {"t": "é"}})  # two bytes in UTF-8
    assert decode_record(one_more.decode(), source="s", now_ms=NOW, max_record_bytes=limit + 1).reason.startswith(
        "too_large: the record is"
    )


def test_a_huge_payload_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(records.orjson, "loads", lambda *a: calls.append(1))
    result = decode_record(b"{" + b" " * 5_000_000 + b"}", source="s", now_ms=NOW)
    assert isinstance(result, Rejection) and "5000002 bytes" in result.reason and calls == []


# ---------------------------------------------------------------------------
# future (item 7)


def test_future_event_times_are_refused() -> None:
    skew = 60_000
    on_time = {**TICK, "ts": NOW + skew}  # exactly at the allowed skew: kept
    assert decode_record(on_time, source="s", now_ms=NOW, max_future_ms=skew)[0] == "tick"
    ahead = decode_record({**TICK, "ts": NOW + skew + 1}, source="s", now_ms=NOW, max_future_ms=skew)
    assert isinstance(ahead, Rejection) and ahead.reason.startswith("future: 'ts'=")
    assert "INGEST_MAX_FUTURE_MS" in ahead.reason and ahead.metric_labels == ("s", "future")
    # a replayed record: its own ingest_ts is the reference, not the (much later) wall clock
    replay = {**TICK, "ingest_ts": TICK["ts"] - 120_000}
    assert decode_record(replay, source="s", now_ms=NOW, default_ingest="event").reason.startswith("future")
    # a candle a year ahead (it would make every later candle of the symbol "out of order")
    year = 365 * 86_400_000
    candle = {**CANDLE, "open_time": CANDLE["open_time"] + year, "close_time": CANDLE["close_time"] + year}
    assert decode_record(candle, source="s", now_ms=NOW).reason.startswith("future: 'close_time'=")
    # files without ingest_ts are ingested at their event time: never "future"
    assert decode_record(candle, source="s", now_ms=NOW, default_ingest="event")[0] == "candle"


def test_ingest_ts_ahead_of_the_wall_clock_is_future_in_live_flows() -> None:
    stamped = {**TICK, "ts": NOW + 3_600_000, "ingest_ts": NOW + 3_600_000}  # both an hour ahead
    assert decode_record(stamped, source="s", now_ms=NOW)[0] == "tick"  # replays: no wall clock
    live = decode_record(stamped, source="s", now_ms=NOW, wall_ms=NOW)
    assert isinstance(live, Rejection) and live.reason.startswith("future: ingest_ts=")


# ---------------------------------------------------------------------------
# Kafka key (item 8)


def test_kafka_key_must_be_the_symbol() -> None:
    raw = orjson.dumps(TICK)
    assert decode_record(raw, source="k", now_ms=NOW, key=b"XRPUSDT")[0] == "tick"
    assert decode_record(raw, source="k", now_ms=NOW, key=None)[0] == "tick"  # unkeyed producers
    for key in (b"ETHUSDT", b"", b"\xff", b"XRPUSDT "):
        result = decode_record(raw, source="k", now_ms=NOW, key=key)
        assert isinstance(result, Rejection) and result.reason.startswith("key_mismatch: the Kafka key"), key
        assert "'symbol' 'XRPUSDT'" in result.reason and result.provider == "newsapi"
    assert decode_record(orjson.dumps(CANDLE), source="k", now_ms=NOW, key=b"ETHUSDT").reason.startswith("key_mismatch")
    control = orjson.dumps({"_control": "enable_provider", "provider": "newsapi"})
    assert decode_record(control, source="k", now_ms=NOW, key=b"anything")[0] == "control"


# ---------------------------------------------------------------------------
# properties: no input raises; the dict and JSON forms of a record agree

FIELD_NAMES_ALL = sorted({*TICK, *CANDLE, "polarity", "meta", "id", "ingest_ts", "_control"})
TEXT = st.characters(exclude_categories=("Cs",))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # what orjson writes (it reads bigger ones as floats)
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(TEXT, max_size=12),
    st.sampled_from(["1m", "1h", "XRPUSDT", "newsapi", "enable_provider", "", "\u0000", "\x7f"]),
    st.integers(MIN_TS_MS, MAX_TS_MS),
    st.floats(-1, 1),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(TEXT, max_size=5), kids, max_size=3)),
    max_leaves=8,
)


@st.composite
def records_of_any_shape(draw: st.DrawFn) -> dict:
    base = dict(draw(st.sampled_from([TICK, CANDLE, {"_control": "enable_provider", "provider": "p"}, {}])))
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES_ALL), max_size=4)):
        if draw(st.booleans()):
            base[name] = draw(JSON_VALUES)
        else:
            base.pop(name, None)
    return base


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records_of_any_shape(), st.one_of(st.none(), st.sampled_from([b"XRPUSDT", b"x"])), st.booleans())
def test_no_record_raises_and_dict_and_json_agree(record: dict, key: bytes | None, wall: bool) -> None:
    kw = {"source": "s", "now_ms": NOW, "key": key, "wall_ms": NOW if wall else None}
    from_dict = decode_record(record, **kw)
    from_json = decode_record(orjson.dumps(record), **kw)
    assert type(from_dict) is type(from_json)
    if isinstance(from_dict, Rejection):
        assert from_dict.reason == from_json.reason and 0 < len(from_dict.reason) < 600
        assert from_dict.row()["id"] and from_json.row()["payload"]
    else:
        assert from_dict == from_json
        kind, out = from_dict
        if kind != "control":
            assert MIN_TS_MS <= out["ingest_ts"] <= MAX_TS_MS or out["ingest_ts"] == NOW


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from([orjson.dumps(TICK), orjson.dumps(CANDLE), b"{}"]), st.integers(0, 300))
def test_no_byte_string_raises(junk: bytes, valid: bytes, cut: int) -> None:
    for raw in (junk, valid[:cut] + junk + valid[cut:], valid[:cut] + junk):
        result = decode_record(raw, source="s", now_ms=NOW)
        assert isinstance(result, Rejection | tuple)


# names_unique / duplicated_fields against Python's json with an object_pairs_hook (the oracle)

NAME_POOL = st.sampled_from(["symbol", "ts", "score", "meta", "id", "a", "b", 'q"uote', "sym bol", "é"])


@st.composite
def json_texts_maybe_with_duplicates(draw: st.DrawFn) -> bytes:
    def obj(depth: int) -> str:
        members = []
        for _ in range(draw(st.integers(0, 4))):
            name = json.dumps(draw(NAME_POOL), ensure_ascii=draw(st.booleans()))
            if draw(st.booleans()) and name.startswith('"s'):
                name = name.replace("s", "\\u0073", 1)  # the same name, spelled with an escape
            value = obj(depth + 1) if depth < 3 and draw(st.booleans()) else json.dumps(draw(SCALARS))
            gap = draw(st.sampled_from(["", "", " ", "\n  "]))
            members.append(f"{name}{gap}:{draw(st.sampled_from(['', ' ']))}{value}")
        if members and draw(st.booleans()):
            members.append(draw(st.sampled_from(members)))  # a member named twice (maybe nested)
        return "{" + ",".join(draw(st.permutations(members))) + "}"

    return obj(0).encode()


def _oracle(data: bytes) -> tuple[bool, set[str]]:
    """(any object names a member twice, contract fields named twice at the top level)."""
    dup_anywhere = False
    top: set[str] = set()

    def hook(pairs: list[tuple[str, object]]) -> dict:
        nonlocal dup_anywhere
        names = [k for k, _ in pairs]
        dup_anywhere |= len(names) != len(set(names))
        return {"__names__": names, **dict(pairs)}

    root = json.loads(data, object_pairs_hook=hook)
    names = root["__names__"]
    top = {n for n in names if names.count(n) > 1 and n in records.FIELD_NAMES}
    return dup_anywhere, top


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts_maybe_with_duplicates())
def test_duplicate_detection_matches_an_object_pairs_hook(data: bytes) -> None:
    dup_anywhere, top = _oracle(data)
    parsed = orjson.loads(data)
    if records.names_unique(data, parsed):
        assert not dup_anywhere  # the cheap test never misses a duplicate
    if not dup_anywhere and not re.search(rb'"\s|\\":', data):
        assert records.names_unique(data, parsed)  # ... and clears texts without blanks after quotes
    if records.fields_unique(data, [parsed], records.FIELD_NAMES):
        assert not top  # the second cheap test never misses a contract field named twice either
    assert {name for _, name in duplicated_fields(data, 1)} == top
