"""Browser fixtures: one live `tickcast up` (subprocess, simulator at 30x) and one headless
Debian Chromium for the session; a fresh browser context per test.

The live system is the session's `tickcast_up` (tests/conftest.py), whose bootstrap model
passes a relaxed ECE gate so that the dashboard shows a production model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.live_server import TickcastServer, launch_chromium

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def server(tickcast_up: TickcastServer) -> TickcastServer:
    """The session's live system (tests/conftest.py `tickcast_up`), shared with the alerting tests."""
    return tickcast_up


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)  # fails with the install hint when Chromium is missing
        try:
            yield chromium
        finally:
            chromium.close()


def _context(browser: Any, *, viewport: dict[str, int] = DESKTOP, locale: str = "en-US") -> Any:
    return browser.new_context(viewport=viewport, locale=locale)


@pytest.fixture()
def new_page(browser: Any, server: TickcastServer) -> Iterator[Any]:
    """`new_page(viewport=..., locale=...)` -> a page with console errors collected in `page.errors`."""
    contexts = []

    def make(**kwargs: Any) -> Any:
        ctx = _context(browser, **kwargs)
        contexts.append(ctx)
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
        page.set_default_timeout(20_000)
        return page

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture()
def page(new_page: Any) -> Any:
    return new_page()
