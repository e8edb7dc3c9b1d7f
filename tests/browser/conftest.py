"""Browser fixtures: one live `tickcast up` (subprocess, simulator at 30x) and one headless
Debian Chromium for the session; a fresh browser context per test.

The bootstrap model must pass its gates for the dashboard to show a production model;
the simulator's few hours of history give an ECE around 0.07, so the gate is relaxed to
0.2 here (the gate itself is tested elsewhere).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.live_server import TickcastServer, launch_chromium
from tests.conftest import free_port

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def server() -> Iterator[TickcastServer]:
    workdir = Path(tempfile.mkdtemp(prefix="tickcast-browser-"))
    srv = TickcastServer(workdir, free_port(), env={"INITIAL_MODEL_MAX_ECE": "0.2"})
    try:
        srv.start()
        srv.wait_for_model()
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


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
