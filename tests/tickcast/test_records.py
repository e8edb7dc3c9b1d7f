"""Record validation (DESIGN §3): every bad-input class is refused with a reason, never raised."""

from __future__ import annotations

import hashlib

import pytest

from tickcast.records import Rejection, decode_record

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
        ({**CANDLE, "volume": -1}, "'volume' must be >= 0"),
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
