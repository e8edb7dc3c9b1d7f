"""POST ingest through real HTTP: accepted records reach `ingest`, bad ones reach nothing.

Records are dated when a test builds them (a second ago): the edge refuses late and future
ones, as the flow would, so fixed dates would age out of the window."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from tests.api.conftest import AUTH, KEY


def now_ms() -> int:
    return int(time.time() * 1000)


def tick(**kw: object) -> dict[str, object]:
    return {"symbol": "XRPUSDT", "ts": now_ms() - 1_000, "score": 0.42, "provider": "newsapi", **kw}


def candle(**kw: object) -> dict[str, object]:
    open_time = (now_ms() // 60_000 - 1) * 60_000  # the last closed minute
    base = {
        "symbol": "XRPUSDT",
        "interval": "1m",
        "open_time": open_time,
        "close_time": open_time + 60_000,
        "open": 1.0,
        "high": 1.2,
        "low": 0.9,
        "close": 1.1,
        "volume": 10.0,
    }
    return {**base, **kw}


def rows_in_store(server) -> int:
    return server.ctx.store.count("sentiment_ticks") + server.ctx.store.count("candles")


@pytest.fixture(autouse=True)
def _clear(server) -> None:
    server.ingested.clear()


def test_one_tick_accepted_and_stamped(server) -> None:
    before = now_ms()
    sent = tick(meta={"src": "x"})
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json=sent, headers=AUTH)
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    (rec,) = server.ingested
    # Forwarded as sent, plus ingest_ts = arrival time.
    assert {k: rec[k] for k in ("symbol", "ts", "score", "provider", "meta")} == sent
    assert before <= rec["ingest_ts"] <= now_ms()


@pytest.mark.parametrize(
    ("path", "body", "n"),
    [
        ("/api/sentiment/tick", lambda: {"ticks": [tick(), tick(score=-0.5, polarity=-1)]}, 2),
        ("/api/sentiment/ticks", lambda: [tick(), tick(ts=now_ms() - 2), tick(ts=now_ms() - 3)], 3),
        ("/api/sentiment/ticks", lambda: {"ticks": [tick()]}, 1),
        ("/api/market/candle", lambda: candle(), 1),
        ("/api/market/candle", lambda: {"candles": [candle(), candle(symbol="BTCUSDT")]}, 2),
        ("/api/market/candles", lambda: [candle()], 1),
    ],
)
def test_batches_accepted(server, path: str, body: Callable[[], object], n: int) -> None:
    with server.client() as c:
        r = c.post(path, json=body(), headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": n} and len(server.ingested) == n


def test_client_ingest_ts_is_ignored(server) -> None:
    """ingest_ts is when this system first saw the record: the server's clock, not the client's
    (a client's value could pin the provider-mix panel, or make latencies negative)."""
    before = now_ms()
    with server.client() as c:
        for claimed in (before - 86_400_000, before + 86_400_000, "junk"):
            r = c.post("/api/sentiment/tick", json=tick(ingest_ts=claimed), headers=AUTH)
            assert r.status_code == 202, r.text
    assert [before <= rec["ingest_ts"] <= now_ms() for rec in server.ingested] == [True] * 3


def test_late_and_future_records_are_422_at_once(server) -> None:
    """The flow would drop or refuse them later without a word to the sender."""
    year = 365 * 86_400_000
    cases = [
        ("/api/sentiment/tick", tick(ts=now_ms() - 11 * 60_000), "late tick: ingest_ts - ts = "),
        ("/api/sentiment/tick", tick(ts=now_ms() + 5 * 60_000), "future: 'ts'="),
        (
            "/api/market/candle",
            candle(open_time=candle()["open_time"] + year, close_time=candle()["close_time"] + year),
            "future: 'close_time'=",
        ),
        (
            "/api/market/candle",
            candle(open_time=candle()["open_time"] + 120_000, close_time=candle()["close_time"] + 120_000),
            "future: 'close_time'=",
        ),
    ]
    with server.client() as c:
        for path, body, fragment in cases:
            r = c.post(path, json=body, headers=AUTH)
            assert r.status_code == 422, r.text
            reason = r.json()["details"][0]["reason"]
            assert reason.startswith(fragment), reason
            assert "SENTIMENT_MAX_LATENCY_MS" in reason or "INGEST_MAX_FUTURE_MS" in reason
        # within the allowed skew (INGEST_MAX_FUTURE_MS, 60 s): accepted
        assert c.post("/api/sentiment/tick", json=tick(ts=now_ms() + 30_000), headers=AUTH).status_code == 202
        old_candle = candle(
            open_time=candle()["open_time"] - 86_400_000, close_time=candle()["close_time"] - 86_400_000
        )
        assert c.post("/api/market/candle", json=old_candle, headers=AUTH).status_code == 202  # candles are never late
    assert len(server.ingested) == 2


@pytest.mark.parametrize("interval", [{}, [], True, 60, "7m"])
def test_a_malformed_candle_is_422_not_500(server, interval: object) -> None:
    with server.client() as c:
        r = c.post("/api/market/candle", json=candle(interval=interval), headers=AUTH)
    assert r.status_code == 422, r.text
    assert "'interval' must be one of" in r.json()["details"][0]["reason"]


_WRONG = {"object": {}, "array": [1, {"a": []}], "bool": True, "numstr": "1", "huge": 10**30}
# every (field, wrong value) pair but the legal ones ("1" is a fine symbol, provider or id; {} a fine meta)
_WRONG_CASES = [
    pytest.param(field, value, id=f"{field}-{label}")
    for field in ("symbol", "ts", "score", "provider", "polarity", "id", "meta")
    for label, value in _WRONG.items()
    if not (label == "numstr" and field in {"symbol", "provider", "id"}) and not (field, label) == ("meta", "object")
]


@pytest.mark.parametrize(("field", "value"), _WRONG_CASES)
def test_every_tick_field_of_the_wrong_type_is_422_naming_it(server, field: str, value: object) -> None:
    content = orjson.dumps({**tick(), field: value}) if value != 10**30 else _json_with_huge(field)
    with server.client() as c:
        r = c.post("/api/sentiment/tick", content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert f"'{field}'" in r.json()["details"][0]["reason"]


def _json_with_huge(field: str) -> bytes:
    import json

    return json.dumps({**tick(), field: 10**30}).encode()


def test_a_record_over_the_size_limit_is_422(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        server.ctx, "settings", server.ctx.settings.model_copy(update={"INGEST_MAX_RECORD_BYTES": 1_024})
    )
    with server.client() as c:
        r = c.post("/api/sentiment/ticks", json=[tick(), tick(meta={"text": "x" * 2_000})], headers=AUTH)
        assert r.status_code == 422, r.text
        (detail,) = r.json()["details"]
        assert detail["index"] == 1 and detail["reason"].startswith("too_large: the record is")
        assert "INGEST_MAX_RECORD_BYTES" in detail["reason"]
        assert c.post("/api/sentiment/tick", json=tick(meta={"text": "x" * 900}), headers=AUTH).status_code == 202
    assert len(server.ingested) == 1


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/api/sentiment/tick", "one"),
        ("/api/sentiment/ticks", "array"),
        ("/api/sentiment/ticks", "batch"),
    ],
)
def test_a_field_named_twice_is_422_with_the_record_index(server, path: str, shape: str) -> None:
    good = orjson.dumps(tick())
    twice = orjson.dumps(tick(symbol="XRPUSDT"))[:-1] + b',"symbol":"ETHUSDT"}'  # orjson would keep ETHUSDT
    escaped = orjson.dumps(tick())[:-1] + b',"\\u0074s":1}'
    if shape == "one":
        bodies = [(twice, 0), (escaped, 0)]
    elif shape == "array":
        bodies = [(b"[" + good + b"," + twice + b"]", 1), (b"[" + escaped + b"," + good + b"]", 0)]
    else:
        bodies = [(b'{"ticks":[' + good + b"," + good + b"," + twice + b"]}", 2)]
    with server.client() as c:
        for content, index in bodies:
            r = c.post(path, content=content, headers={**AUTH, "Content-Type": "application/json"})
            assert r.status_code == 422, r.text
            (detail,) = r.json()["details"]
            assert detail["index"] == index and detail["reason"].startswith("duplicate_key: '"), detail
        # the same names inside meta are not duplicates
        nested = orjson.dumps(tick(meta={"symbol": "A", "ts": 1}))
        assert c.post(path, content=nested, headers={**AUTH, "Content-Type": "application/json"}).status_code == 202
    assert len(server.ingested) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (tick(score="high"), "'score' must be a number"),
        (tick(score=1.5), "'score' must be in [-1, 1]"),
        (tick(ts=1_763_683_200), "not epoch milliseconds"),  # seconds instead of ms
        (tick(ts=12.5), "integer epoch-milliseconds"),
        (tick(polarity=2), "'polarity' must be -1, 0 or 1"),
        (tick(symbol="bad symbol!"), "'symbol' must be a short identifier"),
        ({k: v for k, v in tick().items() if k != "provider"}, "missing field 'provider'"),
        (tick(meta=[1, 2]), "'meta' must be a JSON object"),
        (candle(), "this endpoint takes ticks"),
        ({"_control": "enable_provider", "provider": "newsapi"}, "control records go through /admin"),
    ],
)
def test_bad_tick_is_422_and_nothing_forwarded(server, body: dict, reason: str) -> None:
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json={"ticks": [tick(), body]}, headers=AUTH)
    assert r.status_code == 422
    out = r.json()
    assert "nothing was accepted" in out["error"]
    assert out["details"] == [{"index": 1, "reason": out["details"][0]["reason"]}]
    assert reason in out["details"][0]["reason"]
    assert server.ingested == []  # the good record of the batch was not forwarded either


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (candle(high=0.5), "high < low"),
        (candle(interval="7m"), "unknown interval"),
        (candle(close_time=candle()["close_time"] - 30_000), "close_time must be open_time + 1m"),
        (candle(volume=-1), "'volume' must be a number >= 0"),
        (tick(), "this endpoint takes candles"),
    ],
)
def test_bad_candle_is_422(server, body: dict, reason: str) -> None:
    with server.client() as c:
        r = c.post("/api/market/candle", json=body, headers=AUTH)
    assert r.status_code == 422 and reason in r.json()["details"][0]["reason"]
    assert server.ingested == []


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"42", 422, "expected a JSON object"),
        (b'{"ticks": {}}', 422, "'ticks' must be an array"),
        (b'{"ticks": []}', 422, "the batch is empty"),
        (b'["x"]', 422, "invalid"),
    ],
)
def test_bad_bodies(server, content: bytes, status: int, fragment: str) -> None:
    with server.client() as c:
        r = c.post("/api/sentiment/ticks", content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == status and fragment in r.json()["error"]
    assert server.ingested == []


def test_oversized_body_is_413(server) -> None:
    big = {"ticks": [tick(ts=now_ms() - i) for i in range(400)]}  # ~30 kB > API_MAX_BODY_BYTES=20000
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json=big, headers=AUTH)
        assert r.status_code == 413 and "API_MAX_BODY_BYTES" in r.json()["error"]

        # Chunked upload (no Content-Length) is cut off while reading.
        def chunks():
            for _ in range(30):
                yield b" " * 1000

        r = c.post("/api/sentiment/tick", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413
    assert server.ingested == []


def test_key_required(server) -> None:
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json=tick())
        assert r.status_code == 401
        assert "X-API-Key" in r.json()["error"] and "WWW-Authenticate" in r.headers
        r = c.post("/api/sentiment/tick", json=tick(), headers={"X-API-Key": KEY + "x"})
        assert r.status_code == 403 and "not one of API_KEYS" in r.json()["error"]
        # The second configured key works; a key in the URL does not for a write (streams only).
        assert c.post("/api/sentiment/tick", json=tick(), headers={"X-API-Key": "second-key"}).status_code == 202
        r = c.post(f"/api/sentiment/tick?api_key={KEY}", json=tick())
        assert r.status_code == 401 and "only by the /stream/* endpoints" in r.json()["error"]
    assert len(server.ingested) == 1


def test_nothing_reaches_the_store(server) -> None:
    before = rows_in_store(server)
    with server.client() as c:
        c.post("/api/sentiment/tick", json=tick(score=9), headers=AUTH)
        c.post("/api/sentiment/tick", json=tick())  # no key
    assert rows_in_store(server) == before and server.ingested == []


def test_method_and_route_errors_are_json(server) -> None:
    with server.client() as c:
        r = c.get("/api/sentiment/tick")
        assert r.status_code == 405 and r.headers["content-type"] == "application/json"
        assert "GET is not allowed" in r.json()["error"]
        r = c.get("/api/nothing-here")
        assert r.status_code == 404 and "openapi.json" in r.json()["error"]


def test_kafka_ingest_without_a_broker_answers_503_with_the_reason(server, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """An API replica (ingest = KafkaIngest) whose broker does not acknowledge within
    KAFKA_INGEST_TIMEOUT_S answers 503 with the reason and Retry-After, not 202 into nothing."""
    from dataflows.kafka.produce import KafkaIngest
    from tests.api.conftest import make_settings
    from tests.conftest import free_port

    settings = make_settings(TICKCAST_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", KAFKA_INGEST_TIMEOUT_S=1.0)
    ingest = KafkaIngest(settings)
    monkeypatch.setattr(server.ctx, "ingest", ingest)
    started = time.monotonic()
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json=tick(), headers=AUTH)
    assert r.status_code == 503, r.text
    assert "Kafka did not take these records" in r.json()["error"] and r.headers["Retry-After"]
    assert time.monotonic() - started < 5
