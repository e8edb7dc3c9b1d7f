"""A real `tickcast up` in a subprocess, and Debian's Chromium for Playwright.

Shared by the browser tests and `scripts/screenshots.py`. The server runs in its own
process (a chdb directory belongs to one process, and the test process may hold another)
and in its own process group, so `kill()` is a SIGKILL of exactly what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "tickcast-dev-key"


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installed with scripts/ensure-chromium.sh when missing; a clear error otherwise."""
    if not CHROMIUM.exists():
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ensure-chromium.sh")], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0 or not CHROMIUM.exists():
            raise RuntimeError(
                f"the browser tests need Debian's Chromium at {CHROMIUM} and scripts/ensure-chromium.sh could not "
                f"install it (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}\n"
                "Install it with `sudo apt-get install chromium` and rerun; Playwright's own browser download is "
                "not used."
            )
    return CHROMIUM


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS, headless=True)


class TickcastServer:
    """`tickcast up` with the simulator on `port`, store and models under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        backfill_hours: float = 8,
        symbols: int = 5,
        speed: float = 30,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.args = [
            "up",
            "--store",
            f"chdb://{workdir / 'ch'}",
            "--model-dir",
            str(workdir / "models"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--backfill-hours",
            str(backfill_hours),
            "--symbols",
            str(symbols),
            "--speed",
            str(speed),
        ]
        self.env = {**os.environ, "TICKCAST_LOG_LEVEL": "WARNING", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "tickcast.log"
        self.starts = 0

    # --- process ------------------------------------------------------------------------
    def start(self, timeout: float = 90) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickcast.app.cli", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_for(self._healthy, timeout, "GET /healthz to answer 200")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"tickcast up exited with code {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash, not a clean stop)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(20)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self, timeout: float = 90) -> None:
        self.kill()
        self.start(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # --- waiting ----------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"waited {timeout:.0f} s for {what}; server log:\n{self.log_tail()}")

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, headers={"X-API-Key": KEY}, timeout=10)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers={"X-API-Key": KEY}, timeout=30)

    def wait_for_model(self, timeout: float = 120) -> str:
        return str(
            self.wait_for(lambda: self.get("/api/models")["production"], timeout, "the bootstrap model to be promoted")
        )
