"""Issue 17 on the dashboard, in headless Chromium: ΔECE without a verdict below the minimum
sample count, the scheduler's next run in RETRAIN_TIMEZONE whatever the browser's zone,
restore only for versions with a backup, server sentences in Korean, per-version accuracy
health, and VITE_USE_MOCKS=1 rendering with no backend data at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from api.app import create_app
from api.context import AppContext
from tests.browser.live_server import TickcastServer
from tests.browser.test_dashboard import EMA_JS, no_js_errors, open_screen, wait_conn, wait_emas
from tests.conftest import serving
from tickcast.bus import IdClock, LocalBus
from tickcast.jobs import JobCenter
from tickcast.settings import Settings
from tickcast.store import Store

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]


def test_delta_ece_below_min_samples_is_insufficient_data_not_red(page: Any, server: TickcastServer) -> None:
    """The bins answer is the real one with its sample count cut to 20 (a stand-in for a young
    model's window: the live system's windows fill within seconds at 30x)."""
    min_samples = server.get("/api/ui-config")["calibration"]["min_samples"]

    def few(route: Any) -> None:
        real = route.fetch()
        body = real.json()
        body["live"]["n"] = 20
        body["delta_ece"] = 0.35  # far above CALIBRATION_MONITOR_ECE_DRIFT_ABS: red if judged
        body["enough_samples"], body["verdict"] = False, "insufficient_data"
        route.fulfill(response=real, json=body)

    page.route("**/api/calibration/bins*", few)
    open_screen(page, server, "calibration")
    delta = page.locator("[data-kpi=delta]")
    expect(delta.locator("[data-field=delta-ece]")).to_have_text("+0.350")
    expect(delta).to_contain_text(f"insufficient data: 20 of {min_samples} samples, no verdict")
    assert "bad" not in (delta.get_attribute("class") or "") and "warn" not in (delta.get_attribute("class") or "")
    no_js_errors(page)
    # The screen polls the bins: a handler still fetching when the page closes raised "Response
    # has been disposed" into the next test's set-up (seen on a loaded box).
    page.unroute_all(behavior="ignoreErrors")


def test_accuracy_health_is_shown_per_version(page: Any, server: TickcastServer) -> None:
    production = server.get("/api/models")["production"]
    trend = server.get("/api/accuracy/trend")
    assert trend["model_version"] == production
    open_screen(page, server, "calibration")
    listed = page.locator("[data-role=versions] li[data-version]")
    expect(listed.first).to_be_visible()
    shown = dict(listed.evaluate_all("ls => ls.map(l => [l.dataset.version, l.dataset.health])"))
    assert shown.keys() >= {v["model_version"] for v in trend["versions"][:2]}
    for v in trend["versions"]:
        if v["model_version"] in shown:
            want = "INSUFFICIENT_DATA" if v["n"] < trend["thresholds"]["min_samples"] else v["health"]
            assert shown[v["model_version"]] in (want, v["health"])  # the page may be a poll newer
    expect(page.locator("[data-role=health]")).to_contain_text(production)


def test_next_run_is_in_retrain_timezone_whatever_the_browser_zone(browser: Any, server: TickcastServer) -> None:
    status = server.get("/admin/scheduler-status")
    wall = status["next_run"][:16].replace("T", " ")  # e.g. 2026-04-07 00:00, Asia/Seoul wall time
    for zone in ("America/New_York", "Asia/Seoul"):
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id=zone)
        try:
            page = ctx.new_page()
            page.goto(f"{server.url}/#admin")
            expect(page.locator("[data-field=next-run]")).to_have_text(f"{wall} ({status['timezone']})")
        finally:
            ctx.close()


def test_restore_only_where_a_backup_exists_and_plans_in_korean(new_page: Any, server: TickcastServer) -> None:
    production = server.get("/api/models")["production"]
    env = {
        **os.environ,
        "TICKCAST_CLICKHOUSE_URL": f"chdb://{server.workdir / 'ch'}",
        "MODEL_STORE_DIR": str(server.workdir / "models"),
        "TICKCAST_API_PORT": str(server.port),
    }
    # the store is held by the running system: the CLI says so and works on the registry files
    done = subprocess.run(
        [sys.executable, "-m", "tickcast.app.cli", "models", "backup", production],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "held by the running tickcast" in done.stderr and "DB::Exception" not in done.stderr
    models = server.get("/api/models")["models"]
    with_backup = sorted(m["version"] for m in models if m["has_backup"])
    assert production in with_backup

    page = new_page(locale="ko-KR")
    page.goto(f"{server.url}/#admin")
    page.evaluate("localStorage.setItem('tickcast.lang', 'ko')")
    page.reload()
    page.wait_for_selector("[data-role=registry] tr[data-version]")
    buttons = page.locator("[data-act=restore]").evaluate_all("bs => bs.map(b => b.dataset.version)")
    assert sorted(buttons) == with_backup
    # the server's plan, said in Korean (code + parameters from the API)
    page.locator(f'[data-act=restore][data-version="{production}"]').click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-plan-code]")).to_contain_text(
        f"trained/의 {production} 파일을 backups/의 사본으로 교체"
    )
    dialog.locator("[data-act=cancel]").click()
    # job sentences too: the bootstrap training's last message is translated
    expect(page.locator("[data-role=train-jobs] .job-msg").first).to_contain_text("등록")
    no_js_errors(page)


# --- VITE_USE_MOCKS=1 ------------------------------------------------------------------------------
@pytest.fixture()
def mock_server(store: Store, tmp_path: Path) -> Iterator[str]:
    """An API with VITE_USE_MOCKS=1 over an empty database and no flow: no backend data at all."""
    settings = Settings(_env_file=None, VITE_USE_MOCKS=True, API_KEYS="k1")  # type: ignore[call-arg]
    bus, ids = LocalBus(), IdClock()
    ctx = AppContext(
        settings=settings,
        store=store,
        bus=bus,
        ingest=lambda records: None,
        jobs=JobCenter(store, bus=bus, ids=ids),
        registry_root=tmp_path / "models",
        id_clock=ids,
    )
    try:
        with serving(create_app(ctx)) as base:
            yield base
    finally:
        ctx.jobs.close()


def test_use_mocks_renders_the_dashboard_with_no_backend_data(new_page: Any, mock_server: str) -> None:
    page = new_page()
    backend: list[str] = []
    page.on(
        "request",
        lambda r: (
            backend.append(r.url)
            if "/static/" not in r.url and not r.url.endswith(("/", "/#trading", "/api/ui-config"))
            else None
        ),
    )
    page.goto(f"{mock_server}/#trading")
    expect(page.locator("[data-role=mock-banner]")).to_contain_text("VITE_USE_MOCKS=1")
    wait_conn(page, "live")
    expect(page.locator(".chip[data-symbol]")).to_have_count(5)
    first = wait_emas(page)
    page.wait_for_function(f"(b) => JSON.stringify(({EMA_JS})()) !== JSON.stringify(b)", arg=first, timeout=15_000)
    page.wait_for_selector("[data-chart=price] polyline")
    for screen in ("portfolio", "calibration", "drift", "admin"):
        page.goto(f"{mock_server}/#{screen}")
        page.wait_for_selector(f"#screen-{screen}:not([hidden])")
        if screen == "portfolio":  # the paper book of the mock market: curve, fills, guards, backtest
            page.wait_for_selector("[data-chart=equity] polyline")
            page.wait_for_selector("[data-role=fills] tr[data-reason]")
            expect(page.locator("[data-role=guards] tr[data-guard]")).to_have_count(6)
            page.wait_for_selector("[data-role=bt-metrics] tr[data-metric=total_return]")
    page.wait_for_selector("[data-role=registry] tr[data-version]")
    page.goto(f"{mock_server}/#drift")
    page.wait_for_selector("[data-role=table] tr[data-feature]")
    assert backend == [], f"mock mode asked the backend for data: {backend}"
    no_js_errors(page)
