"""Two `tickcast api` replicas in front of a 2-process flow cluster, over the real broker.

A tick POSTed to replica A goes to the input topic, through the flow cluster, into
`live_events` and the output topic, and reaches an SSE client of replica B with the flow's
event id; a client of B that disconnects and resumes with `Last-Event-ID` gets every event
it missed, once, in order.

Every process shares one store. That needs a ClickHouse server, and none can run here: the
store is `tests/cluster/clickhouse_standin.py`, ClickHouse's HTTP interface over a chdb
engine in a process of its own (the engine is real; the HTTP layer is the stand-in). With a
server store the flow's writer partitions are spread over both processes, so this also runs
that placement.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.api.test_sse import Reader
from tests.cluster.harness import ROOT, FlowCluster, flow_env, make_topics
from tests.conftest import free_port
from tickcast.store import Store

KEY = "replica-key"
AUTH = {"X-API-Key": KEY}


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture()
def server_store(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "standin.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.clickhouse_standin", "--path", str(tmp_path / "ch"), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_port(port, proc)
        yield f"http://default:@127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


def _replica(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickcast.app.cli", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_port(port, proc)
    return proc


class _Reader(Reader):
    """`Reader` whose stop does not leave a read timeout behind on its thread."""

    def run(self) -> None:
        try:
            super().run()
        except httpx.HTTPError:
            if not self._stop_flag.is_set():
                raise


def _post_tick(base: str, n: int, symbol: str = "BTCUSDT") -> None:
    now = int(time.time() * 1000)
    tick = {"symbol": symbol, "ts": now - 500, "score": 0.1 * n, "provider": "newsapi", "id": f"replica-{symbol}-{n}"}
    r = httpx.post(f"{base}/api/sentiment/tick", json=tick, headers=AUTH, timeout=10)
    assert r.status_code == 202, r.text


def _following(base: str, readers: list[Reader], timeout: float = 120) -> None:
    """Wait until every replica follows the live topics. A replica follows them from their end
    as of when its consumer is assigned, which on a loaded box can be seconds after it listens
    (an event published before that never reaches it): ticks of another symbol are posted until
    each reader has seen one. `_ticks_seen` counts BTCUSDT's only."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        _post_tick(base, n, symbol="ETHUSDT")
        n += 1
        for _ in range(30):
            if all(
                any(orjson.loads(m["data"]).get("symbol") == "ETHUSDT" for m in r.events("sentiment")) for r in readers
            ):
                return
            time.sleep(0.1)
    raise AssertionError(f"the replicas do not follow the live topics after {timeout} s")


def _ticks_seen(reader: Reader) -> list[dict[str, object]]:
    return [
        m
        for m in reader.events("sentiment")
        if (data := orjson.loads(m["data"])).get("kind") == "tick" and data.get("symbol") == "BTCUSDT"
    ]


def test_a_tick_posted_to_replica_a_reaches_replica_b_and_a_resume_on_b_misses_nothing(
    kafka_broker: str, server_store: str, tmp_path: Path
) -> None:
    topics = make_topics(kafka_broker)
    env = flow_env(
        kafka_broker,
        topics,
        TICKCAST_CLICKHOUSE_URL=server_store,
        TICKCAST_KAFKA_IDLE_RELEASE_MS="200",
        API_KEYS=KEY,
        MODEL_STORE_DIR=str(tmp_path / "models"),
        TICKCAST_LOG_LEVEL="WARNING",
    )
    (tmp_path / "flow").mkdir()
    cluster = FlowCluster(tmp_path / "flow", env, processes=2, store_url=server_store)
    ports = [free_port(), free_port()]
    replicas = []
    try:
        cluster.start()
        replicas = [_replica(env, port, tmp_path / f"api-{i}.log") for i, port in enumerate(ports)]
        a, b = (f"http://127.0.0.1:{port}" for port in ports)
        stream = "/stream/sentiment"
        on_b = _Reader(b + stream, headers=AUTH)
        on_a = _Reader(a + stream, headers=AUTH)
        on_b.start()
        on_a.start()
        _following(a, [on_a, on_b])
        assert on_a.status == on_b.status == 200

        _post_tick(a, 0)
        on_b.wait(lambda r: len(_ticks_seen(r)) >= 1, timeout=90)
        first = _ticks_seen(on_b)[0]
        on_a.wait(lambda r: any(m["id"] == first["id"] for m in _ticks_seen(r)), timeout=30)
        on_b.stop()  # B's client goes away; the flow goes on publishing

        store = Store(server_store)
        stored = {r["id"] for r in store.rows("SELECT id FROM {db}.live_events WHERE stream = 'sentiment'")}
        assert int(first["id"]) in stored, "B got the event with the id the flow stored"

        for n in range(1, 6):
            # One tick view per symbol and activation: a tick is posted once the previous one's
            # view is out, so each is an event of its own (on a loaded box two ticks 0.3 s
            # apart could share an activation and one view).
            seen = len(_ticks_seen(on_a))
            _post_tick(a, n)
            on_a.wait(lambda r, seen=seen: len(_ticks_seen(r)) > seen, timeout=60)
        on_a.wait(lambda r: len(_ticks_seen(r)) >= 6, timeout=60)
        missed = [m["id"] for m in _ticks_seen(on_a) if int(m["id"]) > int(first["id"])]

        resumed = _Reader(b + stream, headers={**AUTH, "Last-Event-ID": first["id"]})
        resumed.start()
        resumed.wait(lambda r: len(_ticks_seen(r)) >= len(missed), timeout=30)
        time.sleep(0.5)
        got = [m["id"] for m in _ticks_seen(resumed)]
        resumed.stop()
        on_a.stop()
    finally:
        for proc in replicas:
            _stop(proc)
        cluster.stop()
    assert got == missed, f"resume on B: {got}, the events after {first['id']}: {missed}"
    assert len(set(got)) == len(got) >= 5
    assert [int(i) for i in got] == sorted(int(i) for i in got)
    # The processes of the cluster both wrote (the writer partitions are spread with a server store).
    assert all(log.read_text(errors="replace").count("Traceback") == 0 for log in cluster.logs)
