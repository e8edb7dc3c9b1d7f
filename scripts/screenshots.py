"""Screenshots of every dashboard screen for docs/screenshots/ (linked from the README).

Starts `tickcast up` with the simulator (24 h of history at 30x) in a temporary directory,
runs a labeler pass, a small file backfill and a manual retrain so the Job Center has
something to show, lets the live system run for `--warmup` seconds, then drives headless
Debian Chromium:

    trading.png  portfolio.png  calibration.png  drift.png  admin.png   1280x800, whole page
    trading-phone.png  portfolio-phone.png                              390 px wide phone, first screen
    calibration-ko.png  portfolio-ko.png                                Korean labels

The paper-trading screen shows the live account after the warm-up and the report of a
backtest job (POST /admin/trading/backtest, with the sentiment ablation) run after the retrain.

Usage: .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--warmup 150]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.live_server import TickcastServer, launch_chromium  # noqa: E402
from tests.conftest import free_port  # noqa: E402

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def prepare(server: TickcastServer, workdir: Path) -> None:
    """A labeler run, a backfill of a small simulated file set, a manual retrain; wait for all three."""
    files = workdir / "backfill"
    start = (int(time.time() * 1000) - 3 * 86_400_000) // 60_000 * 60_000
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tickcast.app.cli",
            "simulate",
            "--symbols",
            "1",
            "--hours",
            "1",
            "--seed",
            "9",
            "--start-ms",
            str(start),
            "--out",
            str(files),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    jobs = [
        server.post("/admin/labeler/run", {"min_age": 120, "limit": 1000, "force": True}),
        server.post("/admin/jobs/backfill", {"inputs": [str(files)]}),
        server.post("/admin/manual-retrain", {"reason": "screenshots"}),
    ]
    for response in jobs:
        response.raise_for_status()
        job_id = response.json()["job_id"]
        server.wait_for(
            lambda j=job_id: server.get(f"/admin/jobs/{j}")["status"] in ("succeeded", "failed"), 180, f"job {job_id}"
        )
    # a backtest of the stored rows, so the paper-trading screen has a report to draw
    backtest = server.post("/admin/trading/backtest", {"account": "backtest", "ablation": True})
    backtest.raise_for_status()
    job_id = backtest.json()["job_id"]
    server.wait_for(
        lambda j=job_id: server.get(f"/admin/jobs/{j}")["status"] in ("succeeded", "failed"), 600, f"job {job_id}"
    )
    # a backup of the production model, so the registry shows a Restore button where one applies
    env = {
        "TICKCAST_CLICKHOUSE_URL": f"chdb://{workdir / 'ch'}",
        "MODEL_STORE_DIR": str(workdir / "models"),
        "TICKCAST_API_PORT": str(server.port),
    }
    subprocess.run(
        [sys.executable, "-m", "tickcast.app.cli", "models", "backup"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, **env},
    )


def shoot(server: TickcastServer, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            plan = [
                (screen, DESKTOP, "en-US", f"{screen}.png", True)
                for screen in ("trading", "portfolio", "calibration", "drift", "admin")
            ]
            plan += [
                ("trading", PHONE, "en-US", "trading-phone.png", False),
                ("portfolio", PHONE, "en-US", "portfolio-phone.png", False),
                ("calibration", DESKTOP, "ko-KR", "calibration-ko.png", False),
                ("portfolio", DESKTOP, "ko-KR", "portfolio-ko.png", False),
            ]
            for screen, viewport, locale, name, full in plan:
                context = browser.new_context(viewport=viewport, locale=locale, device_scale_factor=1)
                page = context.new_page()
                page.goto(f"{server.url}/#{screen}")
                page.wait_for_selector(
                    f"#screen-{screen}:not([hidden]) [data-chart] > svg, "
                    f"#screen-{screen}:not([hidden]) tr[data-version]"
                )
                page.wait_for_function("document.body.dataset.conn === 'live'", timeout=30_000)
                page.wait_for_timeout(4000)  # live values, charts and jobs settle
                page.mouse.move(0, 0)
                path = out / name
                page.screenshot(path=str(path), full_page=full)
                written.append(path)
                context.close()
        finally:
            browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--warmup", type=float, default=150.0, help="seconds of live running before the shots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tickcast-shots-") as tmp:
        workdir = Path(tmp)
        server = TickcastServer(workdir, free_port(), backfill_hours=24, env={"INITIAL_MODEL_MAX_ECE": "0.2"})
        try:
            server.start(timeout=180)
            server.wait_for_model(timeout=300)
            prepare(server, workdir)
            time.sleep(args.warmup)
            for path in shoot(server, args.out):
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
