"""POST ingest through real HTTP: accepted records reach `ingest`, bad ones reach nothing."""

from __future__ import annotations

import time

import pytest

from tests.api.conftest import AUTH, KEY

TS = 1_763_683_200_123


def tick(**kw: object) -> dict[str, object]:
    return {"symbol": "XRPUSDT", "ts": TS, "score": 0.42, "provider": "newsapi", **kw}


def candle(**kw: object) -> dict[str, object]:
    base = {
        "symbol": "XRPUSDT",
        "interval": "1m",
        "open_time": 1_763_683_200_000,
        "close_time": 1_763_683_260_000,
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
    before = int(time.time() * 1000)
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json=tick(meta={"src": "x"}), headers=AUTH)
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    (rec,) = server.ingested
    # Forwarded as sent, plus ingest_ts = arrival time.
    assert {k: rec[k] for k in ("symbol", "ts", "score", "provider", "meta")} == tick(meta={"src": "x"})
    assert before <= rec["ingest_ts"] <= int(time.time() * 1000)


@pytest.mark.parametrize(
    ("path", "body", "n"),
    [
        ("/api/sentiment/tick", {"ticks": [tick(), tick(score=-0.5, polarity=-1)]}, 2),
        ("/api/sentiment/ticks", [tick(), tick(ts=TS + 1), tick(ts=TS + 2)], 3),
        ("/api/sentiment/ticks", {"ticks": [tick()]}, 1),
        ("/api/market/candle", candle(), 1),
        ("/api/market/candle", {"candles": [candle(), candle(symbol="BTCUSDT")]}, 2),
        ("/api/market/candles", [candle()], 1),
    ],
)
def test_batches_accepted(server, path: str, body: object, n: int) -> None:
    with server.client() as c:
        r = c.post(path, json=body, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": n} and len(server.ingested) == n


def test_replayed_ingest_ts_is_kept(server) -> None:
    with server.client() as c:
        r = c.post("/api/sentiment/tick", json=tick(ingest_ts=TS + 5), headers=AUTH)
    assert r.status_code == 202 and server.ingested[0]["ingest_ts"] == TS + 5


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
        (candle(close_time=1_763_683_300_000), "close_time must be open_time + 1m"),
        (candle(volume=-1), "'volume' must be >= 0"),
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
    big = {"ticks": [tick(ts=TS + i) for i in range(400)]}  # ~30 kB > API_MAX_BODY_BYTES=20000
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
