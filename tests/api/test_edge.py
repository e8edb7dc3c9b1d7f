"""The HTTP edge: honest answers for bad Last-Event-IDs and typos, and the security rules
(key in the header for writes, JSON bodies only, CORS closed unless listed, job starts
rate-limited, backfill confined to its roots, the key hand-out only to same-origin loopback
pages). Issue 15 items 10, 13 and issue 17 "Typos pass silently"."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from api.errors import ApiError
from api.ratelimit import JobStartLimiter
from api.routes_jobs import check_inputs
from tests.api.conftest import AUTH, KEY, make_settings
from tests.api.test_admin import wait_job
from tests.api.test_sse import data_of, publish, reading
from tickcast.settings import SettingsError, load_settings


def streaming(server, *symbols: str) -> None:
    for symbol in symbols:
        publish(server, "predictions", {"symbol": symbol}, symbol, store=False)


# --- Last-Event-ID (issue 15 item 10) --------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["²", "¹²", "1" * 10_000, "٣", "12a", "-5", "1e3", "99999999999999999999"],  # 2^64 <= the last
    ids=["superscript-2", "superscript-12", "10k-digits", "arabic-indic-3", "letters", "negative", "exponent", "2^64+"],
)
def test_a_last_event_id_that_is_not_plain_ascii_digits_is_a_400(server, value: str) -> None:
    with httpx.Client(base_url=server.base, timeout=5) as c:
        header: dict[str, str | bytes] = {**AUTH, "Last-Event-ID": value.encode("utf-8")}  # raw UTF-8 bytes
        for headers, params in ((header, {}), (AUTH, {"last_event_id": value})):
            r = c.get("/stream/events", headers=headers, params=params)
            assert r.status_code == 400, (value[:20], r.status_code, r.text[:200])
            error = r.json()["error"]
            assert r.headers["content-type"] == "application/json"
            assert "Last-Event-ID" in error or "last_event_id" in error, error


def test_a_last_event_id_ahead_of_the_server_gets_a_resync_and_the_stream_goes_on(server) -> None:
    first = publish(server, "events", {"n": "before"})
    ahead = first.id + 10**12  # another deployment's id, or a store that was reset
    with reading(server, "/stream/events", headers={**AUTH, "Last-Event-ID": str(ahead)}) as r:
        r.wait(lambda r: len(r.events("resync")) == 1)
        resync = r.events("resync")[0]
        data = data_of(resync)
        assert data["reason"] == "unknown_last_event_id" and data["last_event_id"] == ahead
        newest = data["restart_from"]
        assert first.id <= newest < ahead and resync["id"] == str(newest)  # EventSource adopts it
        later = publish(server, "events", {"n": "after"})
        r.wait(lambda r: len(r.events("events")) == 1)  # not muted: the next event arrives
        assert [data_of(m)["n"] for m in r.events("events")] == ["after"]
        assert r.events("events")[0]["id"] == str(later.id)
    # Resuming with the id the resync gave: an ordinary resume, no second resync.
    with reading(server, "/stream/events", headers={**AUTH, "Last-Event-ID": str(newest)}) as r:
        r.wait(lambda r: len(r.events("events")) == 1)
        assert data_of(r.events("events")[0])["n"] == "after" and not r.events("resync")


def test_the_dashboard_adopts_the_resync_id() -> None:
    live_js = (Path(__file__).parents[2] / "api" / "static" / "live.js").read_text()
    handler = live_js[live_js.index('addEventListener("resync"') :][:300]
    assert "this.lastId = ev.lastEventId" in handler and "handlers.resync" in handler


# --- the API key: header for writes, URL only for streams (issue 15 item 13) ------------------
def test_writes_take_the_key_only_from_the_header(server) -> None:
    with server.client() as c:
        r = c.post(f"/admin/models/rollback?api_key={KEY}", json={})
        assert r.status_code == 401 and "only by the /stream/* endpoints" in r.json()["error"]
        r = c.get(f"/admin/jobs?api_key={KEY}")
        assert r.status_code == 401
        r = c.post("/admin/models/rollback", json={}, headers=AUTH)
        assert r.status_code == 409 and "nothing to roll back to" in r.json()["error"]  # reached the handler
    with reading(server, "/stream/events", params={"api_key": KEY}, headers={}) as r:
        assert r.status == 200  # EventSource cannot set headers


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"reason": "x"}'),  # the cross-site "simple" request
        ("application/x-www-form-urlencoded", b"reason=x"),
        ("multipart/form-data; boundary=b", b"--b--"),
        ("application/json; charset=utf-16", b'{"reason": "x"}'),
        (None, b'{"reason": "x"}'),
    ],
)
def test_a_body_that_is_not_declared_json_is_a_415_and_starts_nothing(
    server, content_type: str | None, body: bytes
) -> None:
    server.ctx.jobs.register("train", lambda params, progress: {"ok": True})
    before = len(server.ctx.jobs.list("train", 1000))
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    with server.client() as c:
        r = c.post("/admin/emergency-retrain", content=body, headers=headers)
        assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]
        # The repro: the published default key in the URL and a text/plain body.
        r = c.post(f"/admin/emergency-retrain?api_key={KEY}", content=body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
    assert len(server.ctx.jobs.list("train", 1000)) == before


def test_json_variants_and_an_empty_command_body_are_accepted(server) -> None:
    with server.client() as c:
        for headers in ({"Content-Type": "application/json; charset=UTF-8"}, {"Content-Type": "application/json"}, {}):
            r = c.post("/admin/models/rollback", content=b"" if not headers else b"{}", headers={**AUTH, **headers})
            assert r.status_code == 409, r.text  # through the checks, into the handler


# --- CORS ---------------------------------------------------------------------------------------
def test_cors_is_closed_by_default(server) -> None:
    with server.client() as c:
        r = c.get("/api/models", headers={"Origin": "http://evil.test"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = c.options(
            "/admin/manual-retrain",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
        assert "API_CORS_ORIGINS" in r.json()["error"]


def test_cors_opens_for_listed_origins_only(api_store, tmp_path: Path) -> None:
    import warnings

    from api.app import create_app
    from api.context import AppContext
    from tickcast.bus import LocalBus
    from tickcast.jobs import JobCenter

    settings = make_settings(API_CORS_ORIGINS="https://dash.example.com, http://localhost:3000")
    jobs = JobCenter(api_store)
    ctx = AppContext(
        settings=settings, store=api_store, bus=LocalBus(), ingest=lambda r: None, jobs=jobs, registry_root=tmp_path
    )
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key,content-type"}
    with warnings.catch_warnings():  # starlette suggests httpx2; the httpx transport still works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        client = TestClient(create_app(ctx))
    with client as c:
        r = c.options("/admin/manual-retrain", headers={"Origin": "https://dash.example.com", **preflight})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        r = c.options("/admin/manual-retrain", headers={"Origin": "http://evil.test", **preflight})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = c.get("/api/models", headers={"Origin": "http://localhost:3000"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    jobs.close()


@pytest.mark.parametrize("value", ["*", "https://dash.example.com/", "dash.example.com", "https://x.com/path"])
def test_a_cors_origin_that_is_not_an_origin_stops_start_up(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_CORS_ORIGINS", value)
    with pytest.raises(SettingsError, match="API_CORS_ORIGINS"):
        load_settings()


# --- job starts are rate-limited -------------------------------------------------------------
def test_job_starts_are_rate_limited_per_kind_with_retry_after(server) -> None:
    clock = [1000.0]
    saved = server.ctx.job_limiter
    server.ctx.job_limiter = JobStartLimiter(per_hour=2, burst=2, clock=lambda: clock[0])
    server.ctx.jobs.register("train", lambda params, progress: {"ok": True})
    server.ctx.jobs.register("labeler", lambda params, progress: {"ok": True})
    try:
        with server.client() as c:
            for _ in range(2):
                r = c.post("/admin/manual-retrain", json={}, headers=AUTH)
                assert r.status_code == 202
                wait_job(c, r.json()["job_id"])
            before = len(server.ctx.jobs.list("train", 1000))
            for path in ("/admin/manual-retrain", "/admin/emergency-retrain"):  # one bucket: kind 'train'
                r = c.post(path, json={}, headers=AUTH)
                assert r.status_code == 429 and r.headers["Retry-After"] == "1800"  # 3600 s / 2 per hour
                body = r.json()
                assert "API_JOB_RATE_PER_HOUR" in body["error"] and body["retry_after_s"] == 1800
            assert len(server.ctx.jobs.list("train", 1000)) == before  # nothing started
            assert c.post("/admin/labeler/run", json={}, headers=AUTH).status_code == 202  # its own bucket
            clock[0] += 1800
            assert c.post("/admin/manual-retrain", json={}, headers=AUTH).status_code == 202
    finally:
        server.ctx.job_limiter = saved


def test_an_already_running_answer_takes_no_token(server) -> None:
    gate = threading.Event()
    saved = server.ctx.job_limiter
    server.ctx.job_limiter = limiter = JobStartLimiter(per_hour=1, burst=1)
    server.ctx.jobs.register("recalibrate", lambda params, progress: gate.wait(5) and {"ok": True})
    try:
        with server.client() as c:
            r = c.post("/admin/recalibrate", json={}, headers=AUTH)
            assert r.status_code == 202
            for _ in range(3):
                again = c.post("/admin/recalibrate", json={}, headers=AUTH)
                assert again.status_code == 200 and again.json()["job_id"] == r.json()["job_id"]
            gate.set()
            wait_job(c, r.json()["job_id"])
            assert c.post("/admin/recalibrate", json={}, headers=AUTH).status_code == 429  # the one token was used
        assert limiter.take("recalibrate") is not None
    finally:
        server.ctx.job_limiter = saved


# --- backfill roots ------------------------------------------------------------------------------
def test_backfill_reads_only_under_its_roots(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "good").mkdir(parents=True)
    (allowed / "bad").mkdir()
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_text("{}\n")
    good = allowed / "good" / "ticks.jsonl"
    good.write_text("{}\n")
    (allowed / "link.jsonl").symlink_to(secret)
    (allowed / "bad" / "inner.jsonl").symlink_to(secret)
    roots = [allowed.resolve()]
    assert check_inputs([str(good), str(allowed / "good")], roots) == [str(good.resolve()), str(good.parent.resolve())]
    escapes = (str(secret), str(allowed / ".." / "outside" / "secret.jsonl"), str(allowed / "link.jsonl"))
    for escape in escapes:
        with pytest.raises(ApiError) as info:
            check_inputs([escape], roots)
        assert info.value.status == 403 and str(allowed.resolve()) in info.value.message
    with pytest.raises(ApiError) as info:
        check_inputs([str(allowed / "bad")], roots)  # a folder with a file that points outside
    assert info.value.status == 403 and "inner.jsonl" in info.value.message
    with pytest.raises(ApiError) as info:
        check_inputs([str(allowed / "missing.jsonl")], roots)
    assert info.value.status == 422
    with pytest.raises(ApiError) as info:
        check_inputs([str(good)], [])
    assert info.value.status == 403 and "backfill over the API is off" in info.value.message


def test_backfill_outside_the_roots_is_a_403_naming_them(server) -> None:
    server.ctx.jobs.register("backfill", lambda params, progress: {"ok": True})
    with server.client() as c:
        r = c.post("/admin/jobs/backfill", json={"inputs": ["/etc/passwd"]}, headers=AUTH)
    assert r.status_code == 403
    body = r.json()
    assert "BACKFILL_INPUT_ROOTS" in body["error"] and body["outside"] == ["/etc/passwd"]
    assert str(Path("./var").resolve()) in body["allowed_roots"]


# --- the key hand-out over HTTP ------------------------------------------------------------------
def test_ui_config_hands_the_key_to_the_loopback_page_only(server) -> None:
    with server.client() as c:
        assert c.get("/api/ui-config", headers={"Sec-Fetch-Site": "same-origin"}).json()["api_key"] == KEY
        port = server.base.rsplit(":", 1)[1]
        rebinding = c.get("/api/ui-config", headers={"Host": f"evil.test:{port}", "Sec-Fetch-Site": "same-origin"})
        assert rebinding.json()["api_key"] is None
        cross = c.get("/api/ui-config", headers={"Origin": "http://evil.test", "Sec-Fetch-Site": "cross-site"})
        assert cross.json()["api_key"] is None


# --- typos pass silently no more (issue 17) --------------------------------------------------------
def test_a_stream_for_an_unknown_symbol_is_a_404_naming_the_known_ones(server) -> None:
    streaming(server, "KNOWNA")
    with httpx.Client(base_url=server.base, timeout=5) as c:
        r = c.get("/stream/sentiment", params={"symbol": "KNOWNA,TYPOUSDT"}, headers=AUTH)
    assert r.status_code == 404
    body = r.json()
    assert "'TYPOUSDT'" in body["error"] and "KNOWNA" in body["error"] and body["unknown"] == ["TYPOUSDT"]


def test_a_symbol_that_just_started_streaming_is_accepted(server) -> None:
    with httpx.Client(base_url=server.base, timeout=5) as c:
        assert c.get("/stream/predictions", params={"symbol": "FRESHUSDT"}, headers=AUTH).status_code == 404
    publish(server, "sentiment", {"kind": "tick", "symbol": "FRESHUSDT"}, "FRESHUSDT", store=False)  # not stored yet
    with reading(server, "/stream/predictions", params={"symbol": "FRESHUSDT"}) as r:
        assert r.status == 200


def test_calibration_bins_unknown_model_or_scope_is_a_404_naming_the_known_ones(server) -> None:
    with server.client() as c:
        r = c.get("/api/calibration/bins", params={"model_version": "m-typo"})
        assert r.status_code == 404 and "baseline" in r.json()["error"] and "baseline" in r.json()["known"]
        r = c.get("/api/calibration/bins", params={"model_version": "baseline", "scope": "NOPE"})
        assert r.status_code == 404 and "a scope is 'overall' or a symbol" in r.json()["error"]
        assert r.json()["known"][0] == "overall"
        for path in ("/api/calibration/status", "/api/calibration/windows", "/api/accuracy/trend"):
            assert c.get(path, params={"model_version": "m-typo"}).status_code == 404, path


def test_unknown_job_kind_is_a_400_naming_the_kinds(server) -> None:
    server.ctx.jobs.register("labeler", lambda params, progress: {})
    with server.client() as c:
        r = c.get("/admin/jobs", params={"kind": "bogus"}, headers=AUTH)
        assert r.status_code == 400 and "labeler" in r.json()["error"]
        assert c.get("/admin/jobs", params={"kind": "labeler"}, headers=AUTH).status_code == 200


def test_enabling_an_unknown_provider_is_a_404_naming_the_known_ones(server) -> None:
    server.ctx.store.insert_rows(
        "rejected_records",
        [{"id": "r-gdelt", "source": "api", "reason": "x", "provider": "gdelt", "payload": "{}", "received_ts": 0}],
    )
    server.ingested.clear()
    with server.client() as c:
        r = c.post("/admin/providers/enable", json={"provider": "newsapii"}, headers=AUTH)
        assert r.status_code == 404 and "gdelt" in r.json()["error"] and "gdelt" in r.json()["known"]
        assert server.ingested == []  # no control record for a typo
        assert c.post("/admin/providers/enable", json={"provider": "gdelt"}, headers=AUTH).status_code == 202


@pytest.mark.parametrize(
    ("path", "params", "headers", "fragment"),
    [
        ("/api/sentiment/history", [("symbol", "X"), ("stpe", "5m")], {}, "'stpe'"),  # a typo
        ("/api/models", [("limit", "5")], {}, "takes no query parameters"),
        ("/healthz", [("verbose", "1")], {}, "'verbose'"),
        ("/admin/jobs", [("kind", "train"), ("kind", "labeler")], AUTH, "given 2 times"),
        ("/api/candles", [("symbol", "A"), ("symbol", "B")], {}, "symbol=AAA,BBB"),
        ("/stream/events", [("symbols", "A")], AUTH, "accepts symbol, last_event_id, api_key"),
    ],
)
def test_unknown_or_repeated_query_parameters_are_a_400(
    server, path: str, params: list[tuple[str, str]], headers: dict[str, str], fragment: str
) -> None:
    with httpx.Client(base_url=server.base, timeout=5) as c:
        r = c.get(path, params=params, headers=headers)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


def test_an_unknown_body_field_is_a_422_naming_the_accepted_ones(server) -> None:
    with server.client() as c:
        r = c.post("/admin/models/promote", json={"version": "m1", "confrim": True}, headers=AUTH)
    assert (
        r.status_code == 422
        and "'confrim'" in r.json()["error"]
        and r.json()["accepted"]
        == [
            "version",
            "confirm",
            "force",
        ]
    )


def test_an_empty_parameter_is_a_400_not_the_default(server) -> None:
    with server.client() as c:
        r = c.get("/admin/jobs", params={"kind": ""}, headers=AUTH)
        assert r.status_code == 400 and "'kind' is empty" in r.json()["error"]
        assert c.get("/api/calibration/windows", params={"start": ""}).status_code == 400
