"""The paper-trading screen (issue 16) in headless Chromium.

Against the session's live `tickcast up` (simulator at 30x, bootstrap model, default trading
settings): the account's equity curve and drawdown, open positions and fills whose numbers are
the API's, every guard's state, the exchange mode, live updates without a reload, and the kill
switch through the API's 409 plan and the confirmation dialog (halt, then resume) in English
and Korean.

A tripped drawdown guard and a backtest report cannot be waited for on the live system (a 10 %
drawdown of a paper book), so one test serves the real API over a real chdb database whose
trading rows the real engine wrote with a 1 % drawdown limit, and a report that
`dataflows/trading/report.py` computed from them; the flow is absent there (the API's control
records go to a list), which the test says.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import expect

from api.app import create_app
from api.context import AppContext
from tests.browser.live_server import TickcastServer
from tests.browser.test_dashboard import no_js_errors, open_screen
from tests.conftest import serving
from tickcast.bus import IdClock, LocalBus
from tickcast.jobs import JobCenter
from tickcast.settings import Settings
from tickcast.store import Store

pytestmark = pytest.mark.browser


def _money(v: float) -> str:
    """fmt.num(v, 2) as the page prints it (en-US grouping)."""
    return f"{v:,.2f}"


def wait_for_trades(server: TickcastServer, timeout: float = 120) -> dict[str, Any]:
    """The live account's fills (the bootstrap model trades within a minute or two at 30x)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fills = server.get("/api/trading/fills", limit=30)
        if fills["count"]:
            return fills
        time.sleep(2)
    raise AssertionError("the live paper account made no fill in time")


def test_screen_shows_the_accounts_curve_positions_fills_and_guards(page: Any, server: TickcastServer) -> None:
    wait_for_trades(server)
    open_screen(page, server, "portfolio")
    page.wait_for_selector("[data-chart=equity] polyline")
    page.wait_for_selector("[data-chart=drawdown] polyline", state="attached")  # flat at 0 without a drawdown
    # every guard with a state badge; paper mode named (the safety gate's default)
    expect(page.locator("[data-role=guards] tr[data-guard]")).to_have_count(6)
    for guard in ("kill_switch", "drawdown", "daily_loss", "symbol_exposure", "concurrency", "slippage"):
        expect(page.locator(f"[data-role=guards] tr[data-guard={guard}] [data-state]")).to_be_visible()
    expect(page.locator("[data-role=mode] [data-mode]")).to_have_attribute("data-mode", "paper")
    # fills: each row shown is a fill the API has (symbol, time, intent), with its fee and reason
    page.wait_for_selector("[data-role=fills] tr[data-reason]")
    first = page.locator("[data-role=fills] tbody tr").first
    key = first.get_attribute("data-fill")
    fee_text = first.locator("[data-field=fee]").inner_text()
    api_fills = {
        f"{f['symbol']}|{f['fill_time']}|{f['intent']}": f for f in server.get("/api/trading/fills", limit=500)["fills"]
    }
    fill = api_fills[key]
    assert float(fee_text.replace(",", "")) == pytest.approx(fill["fee"], abs=5e-5)
    assert first.get_attribute("data-reason") == fill["reason"]
    # open positions with their unrealized PnL: each row is a position the API has (open then,
    # perhaps closed since: candles close every 2 s), one row per symbol, same entry price
    shown = page.eval_on_selector_all(
        "[data-role=positions] tr[data-opened]", "rs => rs.map(r => [r.dataset.symbol, Number(r.dataset.opened)])"
    )
    api_all = {
        (p["symbol"], p["opened_at"]): p for p in server.get("/api/trading/positions", status="all")["positions"]
    }
    assert len({s for s, _ in shown}) == len(shown), f"two open positions of one symbol: {shown}"
    for symbol, opened in shown:
        assert (symbol, opened) in api_all, (symbol, opened)
        row = page.locator(f"[data-role=positions] tr[data-opened='{opened}'][data-symbol='{symbol}']")
        assert row.locator("[data-field=upnl]").inner_text() not in ("", "—")
    # the KPIs are the summary's (equity moves with every close: compare with the one shown)
    equity_text = page.locator("[data-kpi=equity] .kpi-v").inner_text()
    summary = server.get("/api/trading/summary")
    assert abs(float(equity_text.replace(",", "")) - summary["equity"]) < 0.05 * summary["equity"]
    expect(page.locator("[data-kpi=open] .kpi-v")).not_to_have_text("—")
    no_js_errors(page)


def test_the_page_follows_the_live_stream_without_a_reload(page: Any, server: TickcastServer) -> None:
    wait_for_trades(server)
    open_screen(page, server, "portfolio")
    page.wait_for_selector("[data-chart=equity] polyline")
    as_of = page.locator("[data-role=as-of]").inner_text()
    points = page.eval_on_selector("[data-chart=equity] polyline", "e => e.getAttribute('points').length")
    page.evaluate("window.__noReload = 1")
    # candles close every 2 s at 30x: /stream/trading's equity and heartbeat events move "as of"
    page.wait_for_function(
        "(before) => document.querySelector('[data-role=as-of]').textContent !== before", arg=as_of, timeout=30_000
    )
    page.wait_for_function(
        "(n) => document.querySelector('[data-chart=equity] polyline').getAttribute('points').length !== n",
        arg=points,
        timeout=30_000,
    )
    assert page.evaluate("window.__noReload") == 1  # the same page: no reload happened
    no_js_errors(page)


def _kill_switch_state(server: TickcastServer) -> str:
    guards = {g["guard"]: g for g in server.get("/api/trading/risk")["guards"]}
    return str(guards["kill_switch"]["state"])


def test_halt_and_resume_go_through_the_plan_and_the_confirmation(new_page: Any, server: TickcastServer) -> None:
    wait_for_trades(server)
    page = new_page(locale="ko-KR")
    open_screen(page, server, "portfolio")
    page.wait_for_selector("[data-role=guards] tr[data-guard]")
    dialog = page.locator("#confirm-dialog")
    # Cancel: the API answered 409 with its plan, shown in Korean; nothing is sent
    page.locator("[data-cmd=halt]").click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-plan-code]")).to_have_attribute("data-plan-code", "plan.trading.halt")
    expect(dialog.locator("[data-plan-code]")).to_contain_text("재개할 때까지 신규 진입이 없습니다")
    dialog.locator("[data-act=cancel]").click()
    expect(dialog).to_be_hidden()
    page.wait_for_timeout(3_000)  # more than a candle at 30x: a sent halt would have applied
    assert _kill_switch_state(server) == "ok"
    try:
        # Confirm: the control record goes through the flow, the stage halts at the next candle time
        page.locator("[data-cmd=halt]").click()
        dialog.locator("[data-act=confirm]").click()
        expect(page.locator("#toasts")).to_contain_text("트레이딩 단계로 보냄")
        deadline = time.monotonic() + 60
        while _kill_switch_state(server) != "halted":
            assert time.monotonic() < deadline, "the halt never reached the trading stage"
            time.sleep(1)
        badge = page.locator("[data-role=guards] tr[data-guard=kill_switch] [data-state]")
        expect(badge).to_have_attribute("data-state", "halted", timeout=30_000)
        # the reason is the stored change event, which can trail the state by a store flush
        # and a risk refresh on a busy machine: the badge's wait, not the default 5 s
        expect(page.locator("[data-role=guards] tr[data-guard=kill_switch] [data-role=reason]")).to_contain_text(
            "halt", timeout=30_000
        )
    finally:
        page.locator("[data-cmd=resume]").click()
        expect(dialog.locator("[data-plan-code]")).to_have_attribute("data-plan-code", "plan.trading.resume")
        dialog.locator("[data-act=confirm]").click()
        deadline = time.monotonic() + 60
        while _kill_switch_state(server) != "ok":
            assert time.monotonic() < deadline, "the resume never reached the trading stage"
            time.sleep(1)
    expect(page.locator("[data-role=guards] tr[data-guard=kill_switch] [data-state]")).to_have_attribute(
        "data-state", "ok", timeout=30_000
    )
    no_js_errors(page)


# --- a tripped drawdown guard and a backtest report ------------------------------------------------
T0 = 1_763_683_200_000
MIN = 60_000


def seed_tripped_book(store: Store) -> dict[str, Any]:
    """The real engine with RISK_MAX_DRAWDOWN=0.01 over a falling market; a report of its rows."""
    from dataflows.trading.engine import Engine
    from dataflows.trading.report import frames_from_records, summarize
    from tests.api.test_trading_api import store_out
    from tests.dataflows.trading.bars import bar, config, run_steps

    cfg = config(account="paper", base_size=2_000.0, max_drawdown=0.01, max_concurrent=5)
    bars = []
    for i in range(12):
        for k, symbol in enumerate(("AAAUSDT", "BBBUSDT")):
            o = 100.0 - 1.5 * i - k
            bars.append(bar(symbol, T0 + i * MIN, o=o, c=o - 1.2, p=0.9 if i < 6 else 0.52))
    out = run_steps(Engine(cfg), bars)
    store_out(store, out)
    assert any(r.guard == "drawdown" and r.kind == "trip" for r in out.risk)
    equity, fills, positions = frames_from_records(out)
    report = summarize(equity, fills, positions, starting_equity=cfg.starting_equity, interval_ms=MIN)
    doc = {"report_id": "feed01", "created_at": T0, "account": "paper", "source": "store", "report": report}
    store.insert_rows(
        "backtest_reports",
        [
            {"report_id": "feed01", "account": "paper", "created_at": T0, "source": "store", "start_ts": T0}
            | {"end_ts": T0 + 11 * MIN, "report": orjson.dumps(doc).decode()}
        ],
    )
    return doc


@pytest.fixture()
def tripped_server(store: Store, tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """The API over a store holding a tripped drawdown guard; no flow (control records are kept)."""
    doc = seed_tripped_book(store)
    sent: list[dict[str, Any]] = []
    settings = Settings(_env_file=None, API_KEYS="k1", RISK_MAX_DRAWDOWN=0.01)  # type: ignore[call-arg]
    bus, ids = LocalBus(), IdClock()
    ctx = AppContext(
        settings=settings,
        store=store,
        bus=bus,
        ingest=sent.extend,
        jobs=JobCenter(store, bus=bus, ids=ids),
        registry_root=tmp_path / "models",
        id_clock=ids,
    )
    try:
        with serving(create_app(ctx)) as base:
            yield base, sent, doc
    finally:
        ctx.jobs.close()


def test_tripped_drawdown_shows_its_reason_and_resets_with_confirmation_and_the_backtest_report(
    new_page: Any, tripped_server: tuple[str, list[dict[str, Any]], dict[str, Any]]
) -> None:
    base, sent, doc = tripped_server
    page = new_page()
    page.add_init_script("localStorage.setItem('tickcast.apiKey', 'k1')")
    page.goto(f"{base}/#portfolio")
    row = page.locator("[data-role=guards] tr[data-guard=drawdown]")
    expect(row.locator("[data-state]")).to_have_attribute("data-state", "tripped")
    expect(row.locator("[data-role=reason]")).to_contain_text("drawdown")
    # reset: the API's plan in the dialog, nothing sent until confirmed, then one control record
    row.locator("[data-cmd=reset-drawdown]").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog.locator("[data-plan-code]")).to_have_attribute("data-plan-code", "plan.trading.reset_drawdown")
    assert sent == []
    dialog.locator("[data-act=confirm]").click()
    expect(page.locator("#toasts")).to_contain_text("sent to the trading stage")
    assert [(r["_control"], r["command"], r["reason"]) for r in sent] == [("trading", "reset_drawdown", "dashboard")]
    # the backtest report: the metrics the report module computed, per symbol, and its curve
    report = doc["report"]
    metrics = page.locator("[data-role=bt-metrics]")
    expect(metrics.locator("tr[data-metric=total_return] td")).to_have_text(f"{100 * report['total_return']:+.2f} %")
    expect(metrics.locator("tr[data-metric=trades] td")).to_have_text(str(report["trades"]))
    symbols = page.locator("[data-role=bt-symbols] tbody tr")
    expect(symbols).to_have_count(len(report["per_symbol"]))
    page.wait_for_selector("[data-chart=backtest] polyline")
    # fills with fees and their reason, translated
    expect(page.locator("[data-role=fills] tr[data-reason=entry]").first).to_contain_text("entry")
    no_js_errors(page)


def test_the_backtest_form_sends_its_span(
    new_page: Any, tripped_server: tuple[str, list[dict[str, Any]], dict[str, Any]]
) -> None:
    """The backtest card's From/To (UTC) go to POST /admin/trading/backtest as ISO start/end, shown in
    the confirmation first; empty fields send no bound."""
    base, _sent, _doc = tripped_server
    page = new_page()
    page.add_init_script("localStorage.setItem('tickcast.apiKey', 'k1')")
    page.goto(f"{base}/#portfolio")
    form = page.locator("[data-role=bt-form]")
    form.locator("[name=start]").fill("2025-11-21T00:00")
    form.locator("[name=end]").fill("2025-11-21T12:30")
    form.locator("[data-act=run-backtest]").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog.locator(".plan")).to_contain_text("2025-11-21T12:30Z")
    with page.expect_request("**/admin/trading/backtest") as request:
        dialog.locator("[data-act=confirm]").click()
    assert request.value.post_data_json == {
        "account": "backtest",
        "start": "2025-11-21T00:00Z",
        "end": "2025-11-21T12:30Z",
    }
    no_js_errors(page)
