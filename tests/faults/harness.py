"""Real faults for `tickcast up` run as the README runs it: a small filesystem the test can fill,
the process started, signalled and killed, and its store counted from another process.

`SmallDisk` is a tmpfs of a few MB. As root it is mounted directly (`mount -t tmpfs`);
otherwise it lives in a user + mount namespace of its own (`unshare -rm`, a holder process
keeps it), the server runs inside that namespace (`nsenter`) and the test reaches the files
through `/proc/<holder>/root/…`. Either way the store's writes meet a real full device.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "tickcast-dev-key"
AUTH = {"X-API-Key": KEY}
T_BASE = 1_763_683_200_000


class SmallDisk:
    def __init__(self, mountpoint: Path, size_mb: int) -> None:
        self.mountpoint = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.holder: subprocess.Popen[bytes] | None = None
        mount = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mountpoint)]
        if os.environ.get("TICKCAST_TEST_DISK_NAMESPACE"):  # try the non-root way as root too
            mount = ["false"]
        direct = subprocess.run(mount, capture_output=True)
        if direct.returncode == 0:
            self.how = f"tmpfs of {size_mb} MB mounted at {mountpoint} (mount -t tmpfs, as root)"
            return
        script = f'mount -t tmpfs -o size={size_mb}m tmpfs "$1" && echo ready && exec sleep 100000'
        self.holder = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", script, "sh", str(mountpoint)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = self.holder.stdout.readline() if self.holder.stdout else b""
        if line.strip() != b"ready":
            err = self.holder.stderr.read().decode() if self.holder.stderr else ""
            raise RuntimeError(
                f"cannot create a small filesystem: `mount -t tmpfs` failed ({direct.stderr.decode().strip()}) and "
                f"`unshare -rm` failed ({err.strip()}); run the tests as root or allow unprivileged user namespaces"
            )
        self.how = f"tmpfs of {size_mb} MB in a user+mount namespace (unshare -rm; not root)"

    def here(self, relative: str = "") -> Path:
        """The path as this process sees it."""
        base = self.mountpoint if self.holder is None else Path(f"/proc/{self.holder.pid}/root{self.mountpoint}")
        return base / relative

    def wrap(self, cmd: list[str]) -> list[str]:
        """A command that runs where the small filesystem is mounted."""
        if self.holder is None:
            return cmd
        return ["nsenter", "-U", "-m", "--preserve-credentials", "-t", str(self.holder.pid), "--", *cmd]

    def fill(self) -> int:
        """Write a filler file until the device is full (ENOSPC); returns the bytes written."""
        written = 0
        fd = os.open(self.here("filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 4096):  # MBs, then the last partial MB
                chunk = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, chunk)
                    except OSError:
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.here("filler").unlink(missing_ok=True)

    def close(self) -> None:
        if self.holder is None:
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=False)
        else:
            self.holder.kill()
            self.holder.wait(10)


class Up:
    """`tickcast up --no-simulator` in a process of its own (a session of its own: signals reach only it)."""

    def __init__(
        self, store_url: str, workdir: Path, *, wrap: Any = None, module: str = "tickcast.app.cli", **env: Any
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"up-{self.port}.log"
        cmd = [sys.executable, "-m", module, "up", "--no-simulator", "--port", str(self.port)]
        cmd += ["--store", store_url, "--model-dir", str(workdir / "models")]
        environment = {**os.environ, "TICKCAST_LOG_LEVEL": "INFO", **{k: str(v) for k, v in env.items()}}
        environment["PYTHONPATH"] = str(ROOT)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                wrap(cmd) if wrap else cmd,
                cwd=workdir,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def wait_healthy(self, timeout: float = 90) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tickcast up exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                r = self.client.get("/healthz", timeout=2)
                if r.status_code == 200:
                    return r.json()  # type: ignore[no-any-return]
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no healthy /healthz within {timeout}s:\n{self.log()[-3000:]}")

    def healthz(self) -> httpx.Response:
        return self.client.get("/healthz")

    def post_ticks(self, ids: list[str], *, symbol: str = "BTCUSDT", provider: str = "faults") -> httpx.Response:
        now = int(time.time() * 1000)
        ticks = [{"symbol": symbol, "ts": now, "score": 0.1, "provider": provider, "id": i} for i in ids]
        return self.client.post("/api/sentiment/ticks", json={"ticks": ticks}, headers=AUTH)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError(f"tickcast up still ran {timeout}s later:\n{self.log()[-3000:]}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)


def stored_tick_ids(store_url: str, *, wrap: Any = None) -> set[str]:
    """Tick ids in `sentiment_ticks`, read by a fresh process (the chdb directory is free again)."""
    code = (
        "import json,sys; from tickcast.store import Store; s=Store(sys.argv[1]); "
        "print(json.dumps([r['id'] for r in s.rows('SELECT id FROM {db}.sentiment_ticks FINAL')]))"
    )
    cmd = [sys.executable, "-c", code, store_url]
    out = subprocess.run(wrap(cmd) if wrap else cmd, cwd=ROOT, capture_output=True, check=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))
