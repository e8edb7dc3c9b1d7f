"""The SQL interface over real HTTP, on the real engine: clickhouse-connect, curl and raw requests.

A module database in the session's chdb engine holds predictions and labels; the server
runs in this process (as in `tickcast up`) on a free port. What comes back through HTTP is
compared with what the store's own client reads from the same engine (two paths that must
agree), and every refusal is shown to matter: the same statement on a read-only engine
session *without* the guard really runs.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import chdb
import clickhouse_connect
import httpx
import lz4.frame
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from api.clickhouse_http.app import create_sql_app
from api.clickhouse_http.engine import ReadOnlyEngine
from api.clickhouse_http.server import SqlHttpServer, start_sql_server
from api.clickhouse_http.settings_policy import Limits
from tickcast.settings import Settings
from tickcast.store import Store

KEY = "sql-test-key"
LIMITS = Limits(
    max_execution_time=20, max_memory_usage=2**30, max_result_rows=100_000, max_result_bytes=64 * 2**20, max_threads=1
)
SYMBOLS = [f"S{i:02d}USDT" for i in range(6)]
T0 = 1_763_683_200_000
_counter = itertools.count()


@pytest.fixture(scope="module")
def sql_store(chdb_dir: Path) -> Iterator[Store]:
    store = Store(f"chdb://{chdb_dir}", database=f"sql{os.getpid()}_{next(_counter)}")
    store.migrate()
    rng = np.random.default_rng(3)
    preds, labels = [], []
    for s in SYMBOLS:
        for k in range(300):
            t = T0 + k * 60_000
            preds.append(
                {
                    "symbol": s,
                    "interval": "1m",
                    "close_time": t,
                    "horizon": 1,
                    "model_version": "baseline" if k < 100 else "m1",
                    "prob": float(rng.random()),
                    "fallback_reason": "no_model" if k < 100 else "",
                    "latency_ms": 1.0,
                }
            )
            if k < 290:
                labels.append(
                    {
                        "symbol": s,
                        "interval": "1m",
                        "close_time": t,
                        "horizon": 1,
                        "label": int(rng.random() < 0.5),
                        "close_t": 1.0,
                        "close_th": 1.1,
                    }
                )
    store.insert_rows("predictions", preds)
    store.insert_rows("labels", labels)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


def _serve(engine: ReadOnlyEngine, **kw: object) -> SqlHttpServer:
    server = SqlHttpServer(create_sql_app(engine, api_keys=(KEY, "second-key"), **kw), "127.0.0.1", 0)  # type: ignore[arg-type]
    server.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/ping", timeout=1).text == "Ok.\n":
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the SQL server did not answer /ping")


@pytest.fixture(scope="module")
def engine(sql_store: Store, chdb_dir: Path) -> ReadOnlyEngine:
    return ReadOnlyEngine(str(chdb_dir), limits=LIMITS, database=sql_store.database)


@pytest.fixture(scope="module")
def sql_url(engine: ReadOnlyEngine) -> Iterator[str]:
    server = _serve(engine, max_concurrent=2, queue_wait_s=20)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def client(sql_url: str) -> object:
    port = int(sql_url.rsplit(":", 1)[1])
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, password=KEY)


def _get(url: str, query: str, **params: str) -> httpx.Response:
    return httpx.get(f"{url}/", params={"query": query, **params}, headers={"X-ClickHouse-Key": KEY}, timeout=30)


def _count(status: str) -> float:
    return REGISTRY.get_sample_value("sql_http_queries_total", {"status": status}) or 0.0


# --- clickhouse-connect -----------------------------------------------------------------------
def test_clickhouse_connect_connects_and_counts_like_the_store(client, sql_store: Store) -> None:  # noqa: ANN001
    assert client.server_version == sql_store.scalar("SELECT version()")
    got = client.query(f"SELECT count() FROM {sql_store.database}.predictions FINAL").result_rows[0][0]
    assert got == sql_store.count("predictions") == len(SYMBOLS) * 300
    # the default database is the store's: unqualified names work
    assert client.query("SELECT count() FROM labels FINAL").result_rows[0][0] == sql_store.count("labels")


def test_query_df_and_query_arrow_equal_the_stores_rows(client, sql_store: Store) -> None:  # noqa: ANN001
    sql = "SELECT symbol, close_time, model_version, prob FROM {db}.predictions FINAL ORDER BY symbol, close_time"
    expected = sql_store.df(sql)
    got_df = client.query_df(sql.replace("{db}", sql_store.database))
    pd.testing.assert_frame_equal(
        got_df.assign(close_time=got_df["close_time"].astype("datetime64[ms]")).reset_index(drop=True),
        expected.assign(close_time=expected["close_time"].dt.tz_localize(None).astype("datetime64[ms]")),
        check_dtype=False,
    )
    table = client.query_arrow(sql.replace("{db}", sql_store.database))
    assert table.equals(sql_store.arrow(sql))


def test_bound_parameters_small_and_large_take_the_url_and_the_form(client, sql_store: Store) -> None:  # noqa: ANN001
    one = client.query("SELECT count() FROM predictions FINAL WHERE symbol = {s:String}", parameters={"s": SYMBOLS[0]})
    assert one.result_rows[0][0] == 300
    many = [SYMBOLS[1], *[f"X{i:05d}" for i in range(3000)]]  # ~20 kB: clickhouse-connect posts a multipart form
    big = client.query(
        "SELECT count() FROM predictions FINAL WHERE has({s:Array(String)}, symbol)", parameters={"s": many}
    )
    assert big.result_rows[0][0] == 300


def test_writes_and_settings_are_refused_with_the_readonly_error(client, sql_store: Store) -> None:  # noqa: ANN001
    from clickhouse_connect.driver.exceptions import DatabaseError

    before = sql_store.count("predictions")
    for statement in (
        "INSERT INTO predictions (symbol) VALUES ('x')",
        "DROP TABLE predictions",
        "SET max_threads = 8",
        "ALTER TABLE predictions DELETE WHERE 1",
        "TRUNCATE TABLE labels",
        "CREATE TABLE t (a Int8) ENGINE = Memory",
        "OPTIMIZE TABLE predictions FINAL",
        "SYSTEM STOP MERGES",
        "SELECT 1 SETTINGS max_memory_usage = 99999999999",
    ):
        with pytest.raises(DatabaseError) as err:
            client.command(statement)
        assert err.value.code == 164, statement
        assert "READONLY" in str(err.value)
    assert sql_store.count("predictions") == before
    assert sql_store.scalar("EXISTS TABLE {db}.predictions") == 1


# --- raw HTTP -----------------------------------------------------------------------------------
def test_curl_with_the_key_as_the_password(sql_url: str) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-u", f"default:{KEY}", f"{sql_url}/?query=SELECT%201"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout == "1\n"
    piped = subprocess.run(
        ["curl", "-sS", f"{sql_url}/?user=grafana&password={KEY}", "--data-binary", "@-"],
        input="SELECT 2 + 2",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert piped.stdout == "4\n"


def test_headers_clients_read(sql_url: str) -> None:
    r = _get(sql_url, "SELECT number FROM numbers(3) FORMAT JSONEachRow", query_id="my-query-1")
    assert r.status_code == 200
    assert r.headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["X-ClickHouse-Query-Id"] == "my-query-1"
    assert r.headers["X-ClickHouse-Timezone"]
    summary = json.loads(r.headers["X-ClickHouse-Summary"])
    assert summary["result_rows"] == "3" and summary["read_rows"] == "3"
    assert [json.loads(line)["number"] for line in r.text.splitlines()] == [0, 1, 2]


def test_default_format_and_format_clause_reach_the_engine(sql_url: str) -> None:
    csv = _get(sql_url, "SELECT 1 AS a, 'x' AS b", default_format="CSVWithNames")
    assert csv.text == '"a","b"\n1,"x"\n' and csv.headers["X-ClickHouse-Format"] == "CSVWithNames"
    clause = _get(sql_url, "SELECT 1 AS a FORMAT TSVWithNames", default_format="CSV")
    assert clause.text == "a\n1\n" and clause.headers["X-ClickHouse-Format"] == "TSVWithNames"
    from io import BytesIO

    import pyarrow.parquet as pq

    parquet = _get(sql_url, "SELECT number AS n FROM numbers(5) FORMAT Parquet")
    assert pq.read_table(BytesIO(parquet.content)).column("n").to_pylist() == [0, 1, 2, 3, 4]


def test_post_body_query_params_and_compressed_bodies(sql_url: str) -> None:
    r = httpx.post(
        f"{sql_url}/?query=SELECT%20&param_x=41",
        content=b"{x:UInt8} + 1",
        headers={"X-ClickHouse-Key": KEY},
        timeout=30,
    )
    assert r.text == "42\n"
    z = httpx.post(
        f"{sql_url}/",
        content=gzip.compress(b"SELECT 'zipped'"),
        headers={"X-ClickHouse-Key": KEY, "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert z.text == "zipped\n"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4"])
def test_responses_are_compressed_when_asked(sql_url: str, encoding: str) -> None:
    query = "SELECT number FROM numbers(5000) FORMAT TSV"
    plain = _get(sql_url, query).content
    with httpx.Client(timeout=30) as c:
        raw = c.send(
            c.build_request(
                "GET",
                f"{sql_url}/",
                params={"query": query},
                headers={"X-ClickHouse-Key": KEY, "Accept-Encoding": encoding},
            ),
            stream=True,
        )
        body = b"".join(raw.iter_raw())
    assert raw.headers["Content-Encoding"] == encoding and len(body) < len(plain)
    unpack = {"gzip": gzip.decompress, "deflate": __import__("zlib").decompress, "lz4": lz4.frame.decompress}[encoding]
    assert unpack(body) == plain
    off = httpx.get(
        f"{sql_url}/",
        params={"query": query, "enable_http_compression": "0"},
        headers={"X-ClickHouse-Key": KEY, "Accept-Encoding": "gzip"},
    )
    assert "Content-Encoding" not in off.headers and off.content == plain


def test_authentication_missing_wrong_and_each_way(sql_url: str) -> None:
    missing = httpx.get(f"{sql_url}/", params={"query": "SELECT 1"})
    assert missing.status_code == 401 and missing.headers["X-ClickHouse-Exception-Code"] == "194"
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.get(f"{sql_url}/", params={"query": "SELECT 1"}, headers={"X-ClickHouse-Key": "nope"})
    assert wrong.status_code == 403 and wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    assert wrong.text.startswith("Code: 516. DB::Exception: ") and "(AUTHENTICATION_FAILED)" in wrong.text
    for kwargs in (
        {"auth": ("anyone", "second-key")},
        {"headers": {"X-ClickHouse-User": "default", "X-ClickHouse-Key": KEY}},
        {"params": {"user": "default", "password": KEY}},
    ):
        params = {"query": "SELECT 7", **kwargs.pop("params", {})}  # type: ignore[dict-item]
        assert httpx.get(f"{sql_url}/", params=params, **kwargs).text == "7\n"  # type: ignore[arg-type]


def test_health_endpoints_need_no_key(sql_url: str) -> None:
    assert httpx.get(f"{sql_url}/ping").text == "Ok.\n"
    assert httpx.get(f"{sql_url}/replicas_status").text == "Ok.\n"
    assert httpx.get(f"{sql_url}/").text == "Ok.\n"
    assert httpx.head(f"{sql_url}/").status_code == 200
    nowhere = httpx.get(f"{sql_url}/play")
    assert nowhere.status_code == 404 and "There is no handle /play" in nowhere.text


def test_session_and_transport_parameters_are_accepted_harmlessly(sql_url: str) -> None:
    r = _get(
        sql_url,
        "SELECT 1",
        session_id="abc",
        session_timeout="60",
        session_check="1",
        wait_end_of_query="1",
        send_progress_in_http_headers="1",
        cancel_http_readonly_queries_on_client_close="1",
        client_protocol_version="54405",
        readonly="1",
    )
    assert r.status_code == 200 and r.text == "1\n"


def test_client_settings_lower_limits_are_capped_and_output_settings_apply(sql_url: str) -> None:
    def setting(name: str, **params: str) -> str:
        return _get(sql_url, f"SELECT getSetting('{name}')", **params).text.strip()

    assert setting("max_execution_time") == "20"
    assert setting("max_execution_time", max_execution_time="60") == "20"  # Grafana's timeout: capped
    assert setting("max_execution_time", max_execution_time="3") == "3"
    assert setting("max_threads", max_threads="0") == "1"
    assert setting("readonly") == "1"
    assert setting("os_thread_priority") == "19"  # the query's threads yield the CPU to the flow's
    assert _get(sql_url, "SELECT 1", os_thread_priority="0").headers["X-ClickHouse-Exception-Code"] == "164"
    quoted = _get(sql_url, "SELECT toUInt64(5) AS n FORMAT JSONEachRow", output_format_json_quote_64bit_integers="1")
    unquoted = _get(sql_url, "SELECT toUInt64(5) AS n FORMAT JSONEachRow", output_format_json_quote_64bit_integers="0")
    assert (quoted.text, unquoted.text) == ('{"n":"5"}\n', '{"n":5}\n')
    refused = _get(sql_url, "SELECT 1", readonly="0")
    assert refused.status_code == 403 and refused.headers["X-ClickHouse-Exception-Code"] == "164"
    unknown = _get(sql_url, "SELECT 1", no_such_setting="1")
    assert unknown.status_code == 404 and unknown.headers["X-ClickHouse-Exception-Code"] == "115"


def test_errors_are_clickhouse_shaped_with_statuses(sql_url: str) -> None:
    cases = [
        ("SELECT * FROM no_such_table", 404, "60"),
        ("SELEC 1", 400, "62"),
        ("SELECT 1; SELECT 2", 400, "62"),
    ]
    for query, status, code in cases:
        r = _get(sql_url, query)
        assert (r.status_code, r.headers["X-ClickHouse-Exception-Code"]) == (status, code), query
        assert r.text.startswith(f"Code: {code}. DB::Exception: ") and r.text.endswith(")\n")
    unknown_db = _get(sql_url, "SELECT 1", database="no_such_db")
    assert unknown_db.status_code == 404 and unknown_db.headers["X-ClickHouse-Exception-Code"] == "81"
    native = _get(sql_url, "SELECT 1", compress="1")
    assert native.status_code == 400 and "compress=0" in native.text


# --- what readonly mode lets through in a local engine ---------------------------------------------
def _attempts(tmp: Path) -> list[tuple[str, str, str]]:
    """(query, refusal code, what it does on an unguarded read-only session)."""
    hostname = "/etc/hostname"
    return [
        (f"SELECT file('{hostname}')", "446", "reads"),
        (f"SELECT `fi\\x6ce`('{hostname}')", "446", "reads"),
        (f"SELECT \"file\"('{hostname}')", "446", "reads"),
        (f"SELECT /* /* */ 'x' */ file('{hostname}')", "446", "reads"),
        (f"SELECT $$a$$ AS a, file  (  '{hostname}'  ) AS b", "446", "reads"),
        (f"SELECT 1 INTO OUTFILE '{tmp / 'out1.tsv'}'", "358", "writes"),
        (f"select 1 into/**/outfile '{tmp / 'out2.tsv'}' FORMAT CSV", "358", "writes"),
        ("KILL QUERY WHERE 0", "164", "runs"),
        ("kill -- a comment\n MUTATION WHERE 0", "164", "runs"),
        ("SYSTEM STOP MERGES", "164", "runs"),
        ("SELECT 1; KILL QUERY WHERE 0", "62", "runs"),
        ("SELECT 1 -- x\n; SELECT 2", "62", "runs"),
    ]


def test_the_guard_refuses_what_readonly_lets_through(sql_url: str, chdb_dir: Path, tmp_path: Path) -> None:
    unguarded = chdb.connect(f"{os.path.realpath(chdb_dir)}?readonly=1")
    hostname = Path("/etc/hostname").read_text().strip()
    try:
        for query, code, effect in _attempts(tmp_path):
            r = _get(sql_url, query)
            assert r.status_code in (400, 403) and r.headers["X-ClickHouse-Exception-Code"] == code, (query, r.text)
            out = unguarded.query(query, "TSV").bytes().decode()  # the threat is real without the guard
            if effect == "reads":
                assert hostname in out, query
        assert (tmp_path / "out1.tsv").exists() and (tmp_path / "out2.tsv").exists()
    finally:
        unguarded.query("SYSTEM START MERGES")  # undo the one attempt that changed the engine
        unguarded.close()


# --- limits -----------------------------------------------------------------------------------------
def test_a_query_over_a_limit_is_cancelled_with_a_clear_error(sql_url: str) -> None:
    before = _count("limit")
    started = time.monotonic()
    slow = _get(sql_url, "SELECT count() FROM numbers(1e13) WHERE sipHash64(number) % 7 = 3", max_execution_time="1")
    assert time.monotonic() - started < 10
    assert slow.status_code == 408 and slow.headers["X-ClickHouse-Exception-Code"] == "159"
    assert "Timeout exceeded" in slow.text
    memory = _get(sql_url, "SELECT groupArray(number) FROM numbers(1e9)", max_memory_usage="50000000")
    assert memory.headers["X-ClickHouse-Exception-Code"] == "241" and memory.status_code == 400
    rows = _get(sql_url, "SELECT number FROM numbers(200000)")  # server cap: 100 000 result rows
    assert rows.headers["X-ClickHouse-Exception-Code"] == "396" and "Limit for result exceeded" in rows.text
    assert _count("limit") == before + 3


def test_queries_beyond_the_concurrency_limit_wait_then_get_503(engine: ReadOnlyEngine) -> None:
    server = _serve(engine, max_concurrent=1, queue_wait_s=0.5)
    try:
        heavy = threading.Thread(
            target=_get,
            args=(server.url, "SELECT count() FROM numbers(1e13) WHERE sipHash64(number) % 7 = 3"),
            kwargs={"max_execution_time": "3"},
        )
        heavy.start()
        time.sleep(0.5)
        busy = _get(server.url, "SELECT 1")
        heavy.join()
        assert busy.status_code == 503 and busy.headers["X-ClickHouse-Exception-Code"] == "202"
        assert busy.headers["Retry-After"] == "1"
        assert _get(server.url, "SELECT 1").text == "1\n"  # the slot is free again
    finally:
        server.stop()


def test_outcomes_are_counted(sql_url: str) -> None:
    before = {s: _count(s) for s in ("ok", "readonly", "auth", "error")}
    _get(sql_url, "SELECT 1")
    _get(sql_url, "DROP TABLE predictions")
    httpx.get(f"{sql_url}/", params={"query": "SELECT 1"}, headers={"X-ClickHouse-Key": "bad"})
    _get(sql_url, "SELECT * FROM nowhere")
    after = {s: _count(s) for s in before}
    assert {s: after[s] - before[s] for s in before} == {"ok": 1, "readonly": 1, "auth": 1, "error": 1}
    assert REGISTRY.get_sample_value("sql_http_query_duration_seconds_count") >= 4


def test_a_fault_of_the_interface_is_a_500_in_clickhouses_shape(
    sql_url: str, engine: ReadOnlyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    before = _count("error")
    monkeypatch.setattr(engine, "run", broken)
    r = _get(sql_url, "SELECT 1")
    assert r.status_code == 500 and r.headers["X-ClickHouse-Exception-Code"] == "1001"
    assert r.text.startswith("Code: 1001. DB::Exception: internal error of the SQL interface (RuntimeError)")
    assert _count("error") == before + 1


def test_a_taken_port_is_logged_and_the_system_goes_on(sql_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(_env_file=None, TICKCAST_SQL_PORT=port, API_KEYS=KEY)  # type: ignore[call-arg]
        with caplog.at_level("ERROR", logger="tickcast.sql"):
            assert start_sql_server(settings, sql_store.url, sql_store.database) is None
    assert f"SQL interface NOT started: cannot listen on 127.0.0.1:{port}" in caplog.text
    assert "TICKCAST_SQL_PORT" in caplog.text
    off = Settings(_env_file=None, TICKCAST_SQL_PORT=0)  # type: ignore[call-arg]
    assert start_sql_server(off, sql_store.url, sql_store.database) is None
    assert start_sql_server(settings, "http://clickhouse:8123", "tickcast") is None  # distributed: the server itself
