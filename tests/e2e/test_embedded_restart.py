"""Start, stop and start again an embedded system in one process, on the same chdb path.

Nothing the first system set is found by the second (issue 19): the job starter, the
predictor cache, the provider enable requests and the simulator's backfill event are the
system's own `FlowHooks`, not module globals. Each round POSTs a tick over real HTTP and
sees it stored and on the SSE stream.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.api.test_sse import Reader
from tests.conftest import serving
from tickcast.app.embedded import EmbeddedSystem
from tickcast.settings import load_settings
from tickcast.store import Store

pytestmark = pytest.mark.e2e

KEY = "restart-key"


def one_round(store: Store, tmp_path: Path, n: int) -> EmbeddedSystem:
    settings = load_settings(
        MODEL_STORE_DIR=str(tmp_path / "models"), API_KEYS=KEY, SSE_KEEPALIVE_SECONDS=0.3, TICKCAST_INGEST_ACK="stored"
    )
    system = EmbeddedSystem(settings, simulator=False, store=store)
    assert not system.hooks.backfill_done.is_set() and system.hooks.enable_requests == {}
    assert system.hooks.predictors == {}
    system.start_flow()
    try:
        with serving(system.app()) as base:
            reader = Reader(base + "/stream/sentiment", headers={"X-API-Key": KEY})
            reader.start()
            assert reader.connected.wait(10), "stream did not open"
            try:
                tick = {
                    "symbol": "RSTUSDT",
                    "ts": int(time.time() * 1000) - 1000,
                    "score": 0.5,
                    "provider": "p",
                    "id": f"r{n}",
                }
                r = httpx.post(f"{base}/api/sentiment/ticks", json={"ticks": [tick]}, headers={"X-API-Key": KEY})
                assert r.status_code == 202 and r.json()["stored"] is True, r.text
                assert store.count("sentiment_ticks", f"id = 'r{n}'") == 1
                reader.wait(lambda rd: any("RSTUSDT" in m["data"] for m in rd.events()), timeout=20)
            finally:
                reader.stop()
    finally:
        assert system.stop(timeout=20)
    return system


def test_a_second_embedded_system_in_the_process_behaves_like_the_first(
    store: Store, chdb_dir: Path, tmp_path: Path
) -> None:
    first = one_round(store, tmp_path, 1)
    again = Store(f"chdb://{chdb_dir}", database=store.database)  # the same chdb path, opened again
    second = one_round(again, tmp_path, 2)
    assert second.hooks is not first.hooks
    assert store.count("sentiment_ticks") == 2
