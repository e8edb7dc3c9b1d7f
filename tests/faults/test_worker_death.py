"""A dataflow worker that dies takes the process down with it, visibly (item 11 of issue 15).

Before: a Python exception in a step made Bytewax call the sinks' `close()`, which re-raised
the writer's error; the second exception during unwinding aborted the worker thread, and
chdb's SIGABRT handler then held that thread (and the store) forever — `/healthz` said
`flow: true`. Now `close()` never raises, the worker ends, `/healthz` names the failure,
ingest answers 503, and `tickcast up` exits with status 3 (EXIT_FLOW_DIED).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from dataflows import decode
from tests.conftest import run_coroutine
from tests.faults.crash_on_marker import MARKER
from tests.faults.harness import Up
from tickcast.app.embedded import EXIT_FLOW_DIED, EmbeddedSystem
from tickcast.inbox import IngestRefused
from tickcast.settings import load_settings
from tickcast.store import Store

pytestmark = pytest.mark.e2e


def test_a_dead_worker_fails_healthz_and_refuses_ingest(store: Store, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    real = decode.DecodeLogic.on_batch

    def on_batch(self, values):  # noqa: ANN001, ANN202 - the injected cause (a stand-in for a bug)
        if any(isinstance(p, dict) and p.get("provider") == MARKER for batch in values for _, p, _ in batch):
            raise RuntimeError("injected failure in the decode step")
        return real(self, values)

    monkeypatch.setattr(decode.DecodeLogic, "on_batch", on_batch)
    settings = load_settings(MODEL_STORE_DIR=str(tmp_path / "models"), TICKCAST_INGEST_ACK="queued")
    system = EmbeddedSystem(settings, simulator=False, store=store)
    deaths: list[str] = []
    system.on_flow_death.append(lambda: deaths.append("dead"))
    system.start_flow()
    app = system.app()

    async def healthz() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/healthz")

    try:
        assert run_coroutine(healthz()).status_code == 200
        now = int(time.time() * 1000)
        system.ingest([{"symbol": "BTCUSDT", "ts": now, "score": 0.1, "provider": MARKER, "ingest_ts": now}])
        assert system.thread is not None
        system.thread.join(30)
        assert not system.thread.is_alive()  # the worker ended, not hung in an abort
        assert not system.flow_alive() and deaths == ["dead"]
        r = run_coroutine(healthz())
        assert r.status_code == 503
        body = r.json()
        assert body["flow"] is False and body["failing"] == ["flow"]
        assert "injected failure in the decode step" in body["error"]
        with pytest.raises(IngestRefused, match="dataflow stopped with an error"):
            system.ingest([{"symbol": "BTCUSDT", "ts": now, "score": 0.1, "provider": "p", "ingest_ts": now}])
        assert store.ping()  # the store is still usable in this process
    finally:
        assert system.stop(timeout=5) is False  # the flow had died: not a clean stop


def test_tickcast_up_exits_with_status_3_when_its_worker_dies(tmp_path: Path) -> None:
    up = Up(f"chdb://{tmp_path / 'ch'}", tmp_path, module="tests.faults.crash_on_marker", TICKCAST_SHUTDOWN_TIMEOUT_S=8)
    try:
        up.wait_healthy()
        assert up.post_ticks(["ok-1"]).status_code == 202
        started = time.monotonic()
        try:
            r = up.post_ticks(["boom-1"], provider=MARKER)
            assert r.status_code == 503  # not acknowledged: the flow died with it
            assert "dataflow stopped with an error" in r.json()["error"]
        except httpx.HTTPError:
            pass  # or the server was already gone
        status = up.wait(20)
        took = time.monotonic() - started
    finally:
        up.close()
    log = up.log()
    print(f"[figures] worker death: exit {status} {took:.1f} s after the fatal record")
    assert status == EXIT_FLOW_DIED, log[-3000:]
    assert took < 10
    assert "the signals dataflow stopped with an error" in log and "injected failure" in log
    assert f"exiting with status {EXIT_FLOW_DIED}" in log
