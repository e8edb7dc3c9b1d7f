"""Issue 20's acceptance, as a new user would try it: standard ClickHouse clients against a real
`tickcast up` (simulator on), and `tickcast sql` with and without the running system.

The numbers that come back through the SQL port are checked against the HTTP API (a second
path to the same store), and the flow's pace during a heavy query against its pace just before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.browser.live_server import KEY, ROOT, TickcastServer
from tests.conftest import free_port, query_in_subprocess

pytestmark = pytest.mark.e2e
HEAVY = "SELECT count() FROM numbers(1e13) WHERE sipHash64(number) % 7 = 3"


class System:
    def __init__(self, workdir: Path) -> None:
        self.sql_port = free_port()
        self.server = TickcastServer(
            workdir,
            free_port(),
            backfill_hours=6,
            symbols=10,
            speed=60,
            env={
                "TICKCAST_SQL_PORT": str(self.sql_port),
                "TICKCAST_SQL_MAX_EXECUTION_S": "4",
                "TICKCAST_SQL_MAX_CONCURRENT": "2",  # two heavy queries at once: the worst the limits allow
                "TICKCAST_SQL_MAX_MEMORY_BYTES": str(256 * 2**20),
            },
        )
        self.store_url = f"chdb://{workdir / 'ch'}"
        self.sql_url = f"http://127.0.0.1:{self.sql_port}"

    def client(self, password: str = KEY) -> object:
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.sql_port, password=password)

    def bootstrap_done(self) -> bool:
        """The first-model training of `tickcast up` has run (whether its model passed the gates or not)."""
        jobs = self.server.get("/admin/jobs", kind="train")["jobs"]
        return any(j["trigger"] == "bootstrap" and j["status"] in ("succeeded", "failed") for j in jobs)

    def api_prediction_count(self, symbols: list[str]) -> int:
        return sum(self.server.get("/api/predictions", symbol=s, limit=10_000)["count"] for s in symbols)

    def predictions_made(self) -> float:
        """predictions_total of the flow, all model versions (made at inference, before any write)."""
        text = httpx.get(f"{self.server.url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("predictions_total{"))

    def tickcast_sql(self, query: str, *args: str, sql_port: int | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TICKCAST_SQL_PORT": str(self.sql_port if sql_port is None else sql_port)}
        env["TICKCAST_LOG_LEVEL"] = "WARNING"
        return subprocess.run(
            [sys.executable, "-m", "tickcast.app.cli", "sql", "--store", self.store_url, *args, query],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    sys_ = System(tmp_path_factory.mktemp("sql-up"))
    sys_.server.start()
    try:
        sys_.server.wait_for(sys_.bootstrap_done, 240, "the bootstrap training job to finish")  # steady from here
        yield sys_
    finally:
        sys_.server.stop()


@pytest.fixture(scope="module")
def symbols(system: System) -> list[str]:
    client = system.client()
    names = [r[0] for r in client.query("SELECT DISTINCT symbol FROM tickcast.candles ORDER BY symbol").result_rows]
    assert len(names) == 10
    return names


def test_clickhouse_connect_returns_the_live_count(system: System, symbols: list[str]) -> None:
    client = system.client()
    before = system.api_prediction_count(symbols)
    live = client.query("SELECT count() FROM tickcast.predictions FINAL").result_rows[0][0]
    after = system.api_prediction_count(symbols)
    assert 0 < before <= live <= after
    time.sleep(3)  # the simulator runs at 60x: the count moves
    assert client.query("SELECT count() FROM tickcast.predictions FINAL").result_rows[0][0] > live


def test_query_df_and_query_arrow_agree_with_the_api(system: System, symbols: list[str]) -> None:
    client = system.client()
    end = client.query("SELECT toUnixTimestamp64Milli(max(close_time)) FROM tickcast.labels").result_rows[0][0]
    sql = (
        "SELECT toUnixTimestamp64Milli(close_time) AS t, model_version, prob FROM tickcast.predictions FINAL "
        "WHERE symbol = {s:String} AND close_time < fromUnixTimestamp64Milli({end:Int64}) ORDER BY t, model_version"
    )
    params = {"s": symbols[0], "end": end}
    df = client.query_df(sql, parameters=params)
    table = client.query_arrow(sql, parameters=params)
    api = system.server.get("/api/predictions", symbol=symbols[0], end=end, limit=10_000)["rows"]
    api_rows = sorted((r["close_time"], r["model_version"], r["prob"]) for r in api)
    assert len(api_rows) > 300
    assert list(zip(df["t"], df["model_version"], df["prob"])) == api_rows
    assert list(zip(*(table.column(c).to_pylist() for c in ("t", "model_version", "prob")))) == api_rows
    # the views answer without FINAL or joins
    daily = client.query_df("SELECT * FROM tickcast.daily_accuracy ORDER BY day, model_version")
    assert set(daily["model_version"]) >= {"baseline"} and (daily["n"] > 0).all()


def test_curl_with_the_key(system: System) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-u", f"default:{KEY}", f"{system.sql_url}/?query=SELECT%201"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout == "1\n"


def test_insert_drop_and_set_are_refused_with_the_readonly_error(system: System) -> None:
    client = system.client()
    count = client.query("SELECT count() FROM tickcast.predictions FINAL").result_rows[0][0]
    for statement in (
        "INSERT INTO tickcast.predictions (symbol) VALUES ('X')",
        "DROP TABLE tickcast.predictions",
        "SET max_memory_usage = 1",
    ):
        with pytest.raises(DatabaseError) as err:
            client.command(statement)
        assert err.value.code == 164 and "(READONLY)" in str(err.value), statement
    assert client.query("SELECT count() FROM tickcast.predictions FINAL").result_rows[0][0] >= count


def test_a_wrong_key_gets_403_authentication_failed(system: System) -> None:
    with pytest.raises(DatabaseError) as err:
        system.client(password="not-the-key")
    assert err.value.code == 516
    r = httpx.get(f"{system.sql_url}/", params={"query": "SELECT 1"}, auth=("default", "not-the-key"))
    assert r.status_code == 403 and r.headers["X-ClickHouse-Exception-Code"] == "516"


def test_queries_beyond_the_limits_are_cancelled_while_the_flow_keeps_its_pace(system: System) -> None:
    window = 4.0
    idle_start = system.predictions_made()
    time.sleep(window)
    idle_rate = (system.predictions_made() - idle_start) / window
    assert idle_rate > 2  # 10 symbols at 60x: ~10 candles a second

    results: list[httpx.Response] = []

    def heavy() -> None:
        results.append(httpx.get(f"{system.sql_url}/", params={"query": HEAVY}, auth=("default", KEY), timeout=60))

    busy_start, t0 = system.predictions_made(), time.monotonic()
    threads = [threading.Thread(target=heavy) for _ in range(2)]  # TICKCAST_SQL_MAX_CONCURRENT queries at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy_rate = (system.predictions_made() - busy_start) / (time.monotonic() - t0)
    for r in results:
        assert r.status_code == 408 and r.headers["X-ClickHouse-Exception-Code"] == "159", r.text
        assert "Timeout exceeded" in r.text and "maximum: 4" in r.text
    assert busy_rate >= 0.5 * idle_rate, (idle_rate, busy_rate)

    memory = httpx.get(
        f"{system.sql_url}/",
        params={"query": "SELECT groupArray(number) FROM numbers(1e8)"},
        auth=("default", KEY),
        timeout=60,
    )
    assert memory.headers["X-ClickHouse-Exception-Code"] == "241" and "memory limit exceeded" in memory.text.lower()
    health = httpx.get(f"{system.server.url}/healthz", timeout=10).json()
    assert health["flow"] is True and health["store"] is True
    metrics = httpx.get(f"{system.server.url}/metrics", timeout=10).text
    assert 'sql_http_queries_total{status="limit"} 3.0' in metrics and "sql_http_up 1.0" in metrics


def test_tickcast_sql_with_and_without_the_running_system(system: System) -> None:
    through_port = system.tickcast_sql("SELECT count() FROM predictions FINAL", "--format", "TSV")
    assert through_port.returncode == 0, through_port.stderr
    assert int(through_port.stdout) > 0

    nobody = system.tickcast_sql("SELECT 1", sql_port=free_port())
    assert nobody.returncode == 1
    assert "held by another process" in nobody.stderr and "nothing answers on its SQL port" in nobody.stderr

    refused = system.tickcast_sql("DROP TABLE predictions")
    assert refused.returncode == 1 and "Code: 164" in refused.stderr

    system.server.stop()  # from here on the store is free: the command opens it itself
    direct = system.tickcast_sql(
        "SELECT (SELECT count() FROM predictions FINAL) AS p, (SELECT count() FROM labeled_predictions) AS lp",
        "--format",
        "JSONEachRow",
    )
    assert direct.returncode == 0, direct.stderr
    import json

    got = json.loads(direct.stdout)
    expected = query_in_subprocess(
        system.store_url,
        "SELECT (SELECT count() FROM tickcast.predictions FINAL) AS p, (SELECT count() FROM "
        "(SELECT symbol, interval, horizon, close_time, model_version FROM tickcast.predictions FINAL) AS a "
        "INNER JOIN (SELECT symbol, interval, horizon, close_time FROM tickcast.labels FINAL) AS b "
        "USING (symbol, interval, horizon, close_time)) AS lp",
    )[0]
    assert int(got["p"]) == expected["p"] >= int(through_port.stdout)
    assert int(got["lp"]) == expected["lp"] > 0
