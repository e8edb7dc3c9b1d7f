"""The dashboard across a crash of the server (SIGKILL, restart), without a page reload.

A file of its own so that it runs after the other browser tests: it SIGKILLs the session's
shared `tickcast up` (embedded mode, no recovery store) and restarts it. The restarted trading
stage continues the stored paper book (`trading: resumed the book` in the log): the Portfolio
screen never shows two open positions of one symbol after the crash.
"""

from __future__ import annotations

from typing import Any

from tests.browser.live_server import TickcastServer
from tests.browser.test_dashboard import EMA_JS, open_screen, wait_conn, wait_emas, wait_emas_change
from tests.browser.test_portfolio import wait_for_trades


def test_page_reconnects_after_the_api_restarts_without_a_reload(page: Any, server: TickcastServer) -> None:
    wait_for_trades(server)  # a paper book in the store before the crash
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/stream/sentiment" in r.url else None)
    open_screen(page, server, "trading")
    wait_conn(page, "live")
    wait_emas_change(page, wait_emas(page), timeout=15_000)
    page.wait_for_function("() => window.tickcast.hub.streams.get('trading.sentiment').lastId")  # an event id seen
    page.evaluate("window.__sameDocument = 'yes'")
    seen = len(urls)

    server.kill()
    page.wait_for_function("document.body.dataset.conn !== 'live'", timeout=15_000)
    server.start()
    wait_conn(page, "live", timeout=60_000)

    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    assert page.evaluate("window.tickcast.hub.reconnects") >= 1
    resumed = [u for u in urls[seen:] if "last_event_id=" in u]
    assert resumed, f"no reconnect carried last_event_id: {urls[seen:]}"
    wait_emas_change(page, page.evaluate(EMA_JS), timeout=30_000)

    # the paper book went on where the store had it: one open position per symbol at most
    start_log = server.log_path.read_text(errors="replace").rsplit("===== start", 1)[-1]
    assert "trading: resumed the book of account 'paper'" in start_log, server.log_tail()
    open_positions = [p["symbol"] for p in server.get("/api/trading/positions")["positions"]]
    assert len(open_positions) == len(set(open_positions)), f"two open positions of one symbol: {open_positions}"
    open_screen(page, server, "portfolio")
    page.wait_for_selector("[data-chart=equity] polyline")
    shown = page.eval_on_selector_all("[data-role=positions] tr[data-opened]", "rs => rs.map(r => r.dataset.symbol)")
    assert len(shown) == len(set(shown)), f"the Portfolio screen shows two open positions of one symbol: {shown}"
