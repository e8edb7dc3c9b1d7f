"""Trading endpoints over real HTTP on a real chdb database: reads of rows the engine wrote,
the guards' state, the kill switch's 409 plan / 202 control record, the live stream and the
backtest report."""

from __future__ import annotations

import orjson
import pytest

from dataflows.trading.engine import Engine, TradingOut
from dataflows.trading.items import TradeControl
from tests.api.conftest import AUTH
from tests.api.test_sse import data_of, publish, reading
from tests.dataflows.trading.bars import MIN, T0, bar, config, run_steps

TABLES = {"orders": "orders", "fills": "fills", "positions": "positions", "equity": "equity", "risk": "risk_events"}


def store_out(store, out: TradingOut) -> None:
    for attr, table in TABLES.items():
        records = getattr(out, attr)
        if records:
            store.insert_rows(table, [r.row() for r in records])


@pytest.fixture(scope="module")
def traded(server):
    """Two round trips, one open position, a refused entry (concurrency 1... then 2), a halt control."""
    cfg = config(account="paper", base_size=1_000.0, max_concurrent=2, atr_stop=1.0, max_drawdown=0.5)
    engine = Engine(cfg)
    hold = 0.52
    bars = [
        bar("AAA", T0, p=0.9, atr=0.05),
        bar("BBB", T0, p=0.9, atr=0.05),
        bar("CCC", T0, p=0.9, atr=0.05),  # refused: two entries are already pending
        bar("AAA", T0 + MIN, o=100, c=104, p=hold),
        bar("BBB", T0 + MIN, o=100, c=99, p=0.3),  # exit decided
        bar("AAA", T0 + 2 * MIN, o=104, c=106, p=hold),
        bar("BBB", T0 + 2 * MIN, o=98, c=98, p=hold),  # exits at 98
    ]
    out = run_steps(engine, bars)
    engine.apply_control(TradeControl("h1", "halt", T0 + 2 * MIN + 5, "test", "drill"), out)
    store_out(server.ctx.store, out)
    return out


def test_positions_with_marks(server, traded) -> None:
    with server.client() as c:
        body = c.get("/api/trading/positions").json()
        assert body["account"] == "paper" and body["status"] == "open" and body["count"] == 1
        pos = body["positions"][0]
        assert pos["symbol"] == "AAA" and pos["mark_price"] == 106 and pos["entry_price"] == 100
        assert pos["unrealized_pnl"] == pytest.approx(10 * 6) and pos["stop_price"] == pytest.approx(95.0)
        assert pos["target_price"] is None  # no take-profit configured: null, not NaN
        closed = c.get("/api/trading/positions", params={"status": "closed"}).json()["positions"]
        assert [(p["symbol"], p["exit_reason"], p["exit_price"]) for p in closed] == [("BBB", "exit", 98)]
        unknown = c.get("/api/trading/positions", params={"account": "other"})
        assert unknown.status_code == 404 and unknown.json()["known"] == ["paper"]  # a typo is not an empty account
        assert c.get("/api/trading/positions", params={"symbol": "NOPEUSDT"}).status_code == 404
        assert c.get("/api/trading/positions", params={"stauts": "open"}).status_code == 400  # unknown parameter
        assert c.get("/api/trading/positions", params={"status": "bogus"}).status_code == 400


def test_orders_fills_and_refusals(server, traded) -> None:
    with server.client() as c:
        orders = c.get("/api/trading/orders").json()["orders"]
        assert {o["symbol"] for o in orders} == {"AAA", "BBB"}  # CCC's entry was refused before it was placed
        refused = c.get("/api/trading/risk-events", params={"guard": "concurrency"}).json()["events"]
        assert [(e["symbol"], e["kind"], e["threshold"]) for e in refused] == [("CCC", "refusal", 2.0)]
        fills = c.get("/api/trading/fills", params={"symbol": "BBB"}).json()["fills"]
        assert [(f["side"], f["reason"], f["price"]) for f in fills] == [("sell", "exit", 98), ("buy", "entry", 100)]
        assert fills[0]["decision_time"] == T0 + MIN and fills[0]["realized_pnl"] == pytest.approx(-20)
        assert c.get("/api/trading/fills", params={"start": T0 + 10 * MIN, "end": T0}).status_code == 400


def test_equity_curve_and_step(server, traded) -> None:
    with server.client() as c:
        body = c.get("/api/trading/equity").json()
        assert [p["ts"] for p in body["points"]] == [T0, T0 + MIN, T0 + 2 * MIN]
        assert body["points"][-1]["equity"] == pytest.approx(10_000 - 20 + 60)
        thinned = c.get("/api/trading/equity", params={"step": "2m"}).json()
        assert [p["ts"] for p in thinned["points"]] == [T0 + MIN, T0 + 2 * MIN]  # last row of each 2-minute bucket
        sym = c.get("/api/trading/equity", params={"symbol": "AAA"}).json()
        assert sym["points"][-1]["unrealized_pnl"] == pytest.approx(60)
        assert c.get("/api/trading/equity", params={"step": "soon"}).status_code == 400


def test_risk_shows_each_guard(server, traded) -> None:
    with server.client() as c:
        body = c.get("/api/trading/risk").json()
    guards = {g["guard"]: g for g in body["guards"]}
    assert set(guards) == {"kill_switch", "drawdown", "daily_loss", "symbol_exposure", "concurrency", "slippage"}
    assert guards["concurrency"]["limit"] == 5 and guards["concurrency"]["value"] == 1  # the server's settings
    assert guards["concurrency"]["last_refusal"]["reason"].startswith("entry refused")
    assert guards["kill_switch"]["last_change"]["reason"] == "halt by test: drill"
    assert guards["drawdown"]["limit"] == 0.10 and guards["drawdown"]["state"] == "ok"
    assert guards["symbol_exposure"]["symbol"] == "AAA" and guards["symbol_exposure"]["value"] > 0
    assert body["exchange"]["mode"] == "paper"


def test_summary(server, traded) -> None:
    with server.client() as c:
        s = c.get("/api/trading/summary").json()
    assert s["equity"] == pytest.approx(10_040) and s["open_positions"] == 1 and s["trades"] == 1
    assert s["hit_rate"] == 0.0 and s["realized_pnl"] == pytest.approx(-20)


def test_kill_switch_needs_confirm_then_sends_a_control_record(server, traded) -> None:
    server.ingested.clear()
    with server.client() as c:
        r = c.post("/admin/trading/flatten", json={"reason": "drill"}, headers=AUTH)
        assert r.status_code == 409 and r.json()["plan"]["open_positions"] == ["AAA"]
        assert "confirm" in r.json()["error"] and not server.ingested
        r = c.post("/admin/trading/flatten", json={"confirm": True, "reason": "drill"}, headers=AUTH)
        assert r.status_code == 202
        assert c.post("/admin/trading/halt", json={"confirm": True}).status_code == 401
        assert c.post("/admin/trading/halt", json={"confirm": "yes"}, headers=AUTH).status_code == 422
    (record,) = server.ingested
    assert record["_control"] == "trading" and record["command"] == "flatten" and record["reason"] == "drill"
    assert record["id"] == r.json()["id"] and abs(record["at"] - r.json()["at"]) == 0
    from tickcast.records import decode_record

    kind, decoded = decode_record(record, source="http", now_ms=record["at"])  # what the flow's decoder makes of it
    assert kind == "control" and decoded["command"] == "flatten" and decoded["action"] == "trading"


def test_control_records_are_validated_by_the_decoder() -> None:
    from tickcast.records import Rejection, decode_record

    bad = decode_record(
        {"_control": "trading", "command": "sell_everything", "id": "x", "at": T0}, source="t", now_ms=T0
    )
    assert isinstance(bad, Rejection) and "command" in bad.reason
    bad = decode_record({"_control": "trading", "command": "halt", "at": T0}, source="t", now_ms=T0)
    assert isinstance(bad, Rejection) and "'id'" in bad.reason


def test_trading_stream(server) -> None:
    with reading(server, "/stream/trading", params={"symbol": "AAA"}) as r:
        publish(server, "trading", {"kind": "fill", "symbol": "BBB"}, "BBB")
        publish(server, "trading", {"kind": "fill", "symbol": "AAA", "price": 101.0}, "AAA")
        r.wait(lambda r: len(r.events("trading")) >= 1)
        assert [data_of(m)["symbol"] for m in r.events("trading")] == ["AAA"]
        last = r.events("trading")[-1]["id"]
    publish(server, "trading", {"kind": "equity", "symbol": "AAA"}, "AAA")
    with reading(server, "/stream/trading", headers={**AUTH, "Last-Event-ID": last}) as r:
        r.wait(lambda r: len(r.events("trading")) >= 1)
        assert data_of(r.events("trading")[0])["kind"] == "equity"


def test_backtest_report(server) -> None:
    with server.client() as c:
        assert c.get("/api/trading/backtest").status_code == 404
        doc = {
            "report_id": "abc123",
            "created_at": T0,
            "account": "backtest",
            "source": "store",
            "report": {"total_return": 0.01},
            "span": {"start": T0, "end": None},  # tickcast backtest --start (checked against the document)
            "written_to": "/tmp/x.json",
        }
        server.ctx.store.insert_rows(
            "backtest_reports",
            [
                {
                    "report_id": "abc123",
                    "account": "backtest",
                    "created_at": T0,
                    "source": "store",
                    "start_ts": T0,
                    "end_ts": T0,
                    "report": orjson.dumps(doc).decode(),
                }
            ],
        )
        served = c.get("/api/trading/backtest").json()
        assert served["report"]["total_return"] == 0.01 and "written_to" not in served
        assert served["span"] == {"start": T0, "end": None}
        assert c.get("/api/trading/backtest", params={"id": "ffff"}).status_code == 404
        r = c.post("/admin/trading/backtest", json={"account": "paper"}, headers=AUTH)
        assert r.status_code == 409


def test_ui_config_serves_the_auto_loop_interval(server) -> None:
    with server.client() as c:
        cfg = c.get("/api/ui-config").json()
    assert cfg["trading"]["auto_loop_interval_ms"] == 5_000
    assert cfg["trading"]["entry"] == 0.55


def test_cli_kill_switch_and_status_talk_to_the_running_api(server, traded) -> None:
    from click.testing import CliRunner

    from tickcast.app.cli import main

    server.ingested.clear()
    runner = CliRunner()
    env = {"API_KEYS": "test-key-1"}
    asked = runner.invoke(
        main, ["trading", "halt", "--api", server.base, "--reason", "cli drill"], env=env, input="n\n"
    )
    assert asked.exit_code != 0 and "no new entries until resumed" in asked.output and not server.ingested
    done = runner.invoke(main, ["trading", "halt", "--api", server.base, "--reason", "cli drill", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert [r["command"] for r in server.ingested] == ["halt"] and server.ingested[0]["reason"] == "cli drill"
    status = runner.invoke(main, ["trading", "status", "--api", server.base], env=env)
    assert status.exit_code == 0 and "kill_switch" in status.output and "equity 10040.00" in status.output
    wrong_key = runner.invoke(main, ["trading", "resume", "--api", server.base, "--yes"], env={"API_KEYS": "nope"})
    assert wrong_key.exit_code != 0 and "403" in wrong_key.output


def test_backtest_job_takes_a_span(server) -> None:
    """POST /admin/trading/backtest: start/end as `tickcast backtest --start/--end` takes them
    (ISO 8601), handed to the job as epoch ms; a malformed or empty span is a 422 in JSON."""
    import threading

    got: list[dict] = []
    ran = threading.Event()

    def job(params, progress):
        got.append(dict(params))
        ran.set()
        return {}

    server.ctx.jobs.register("backtest", job)
    with server.client() as c:
        for body, part in (
            ({"start": "yesterday"}, "'start' has an unexpected format"),
            ({"start": "2025-13-40T00:00:00Z"}, "'start'"),
            ({"end": 1763683200000}, "'end' must be a string"),
            ({"start": "2025-11-22T00:00:00Z", "end": "2025-11-21"}, "after 'end'"),
            ({"from": "2025-11-21"}, "unknown field"),
        ):
            r = c.post("/admin/trading/backtest", json=body, headers=AUTH)
            assert r.status_code == 422, (body, r.text)
            assert r.headers["content-type"].startswith("application/json") and part in r.json()["error"], r.text
        r = c.post(
            "/admin/trading/backtest",
            json={"ablation": False, "start": "2025-11-21T00:00:00Z", "end": "2025-11-21T12:00:00+00:00"},
            headers=AUTH,
        )
        assert r.status_code == 202, r.text
    assert ran.wait(10)
    assert got == [{"account": "backtest", "ablation": False, "start": T0, "end": T0 + 12 * 60 * MIN}]
