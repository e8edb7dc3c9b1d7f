"""A real server for the API tests: uvicorn on a free port in a thread, a migrated chdb
database of the module's own, a LocalBus, and an ingest recorder in place of the flow.

Every response a test gets through `Server.client()` is checked against the server's own
OpenAPI document (tests/api/openapi_check.py)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.context import AppContext
from tests.api.openapi_check import DocumentChecker
from tests.conftest import free_port
from tickcast.bus import IdClock, LocalBus
from tickcast.jobs import JobCenter
from tickcast.settings import Settings
from tickcast.store import Store

KEY = "test-key-1"
AUTH = {"X-API-Key": KEY}
_counter = itertools.count()


@dataclass
class Server:
    base: str
    ctx: AppContext
    ingested: list[dict[str, Any]] = field(default_factory=list)
    flow_ok: list[bool] = field(default_factory=lambda: [True])
    checker: DocumentChecker | None = None

    def client(self, **kw: Any) -> httpx.Client:
        hooks = {"response": [self.checker.check]} if self.checker is not None else {}
        return httpx.Client(base_url=self.base, timeout=10.0, event_hooks=hooks, **kw)


def make_settings(**overrides: Any) -> Settings:
    base = {
        "API_KEYS": f"{KEY},second-key",
        "SSE_KEEPALIVE_SECONDS": 0.3,
        "SSE_MAX_RATE_HZ": 5.0,
        "SSE_MAX_BURST": 1,
        "API_MAX_BODY_BYTES": 20_000,
        "SENTIMENT_HISTORY_MAX_POINTS": 500,
        "SSE_RESUME_MAX_EVENTS": 50,
        "CALIBRATION_BINS": 5,
        "CALIBRATION_MIN_BIN_SAMPLES": 3,
        "CALIBRATION_DRIFT_MIN_SAMPLES": 10,
        "PROMOTION_COOLDOWN_SECONDS": 3600,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def api_store(chdb_dir: Path) -> Iterator[Store]:
    s = Store(f"chdb://{chdb_dir}", database=f"api{os.getpid()}_{next(_counter)}")
    s.migrate()
    yield s
    s.command(f"DROP DATABASE IF EXISTS {s.database}")


def start_server(ctx_factory: Any) -> Iterator[Server]:
    port = free_port()
    holder: dict[str, Any] = {}
    server_box = Server(f"http://127.0.0.1:{port}", None)  # type: ignore[arg-type]
    ctx: AppContext = ctx_factory(server_box)
    server_box.ctx = ctx
    app = create_app(ctx)
    server_box.checker = DocumentChecker(app.state.openapi)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    holder["server"] = server
    try:
        yield server_box
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        ctx.jobs.close()


@pytest.fixture(scope="module")
def server(api_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    def factory(box: Server) -> AppContext:
        bus = LocalBus()
        ids = IdClock()
        jobs = JobCenter(api_store, bus=bus, ids=ids, min_interval_s=0.05)
        return AppContext(
            settings=make_settings(),
            store=api_store,
            bus=bus,
            ingest=box.ingested.extend,
            jobs=jobs,
            registry_root=tmp_path_factory.mktemp("registry"),
            flow_alive=lambda: box.flow_ok[0],
            id_clock=ids,
        )

    yield from start_server(factory)
