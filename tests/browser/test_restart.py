"""The dashboard across a crash of the server (SIGKILL, restart), without a page reload.

A file of its own so that it runs after the other browser tests: it SIGKILLs the session's
shared `tickcast up` (no recovery store in embedded mode), and the paper account it restarts
with is a new book while the store still holds the old one's open positions (the Portfolio
screen's tests check the uninterrupted account; see the issue-16 closing note).
"""

from __future__ import annotations

from typing import Any

from tests.browser.live_server import TickcastServer
from tests.browser.test_dashboard import EMA_JS, open_screen, wait_conn, wait_emas, wait_emas_change


def test_page_reconnects_after_the_api_restarts_without_a_reload(page: Any, server: TickcastServer) -> None:
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
