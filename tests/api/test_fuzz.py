"""Schemathesis against /openapi.json: every operation, positive and negative data, every phase
(examples, coverage, fuzzing, stateful), and every check but one. It must find nothing: no 5xx,
no response that differs from the document (status, content type, headers, JSON schema, each
SSE event), no schema-violating request accepted, auth never ignored.

Run exactly as an operator would: the `st` command line against a live server (uvicorn in a
thread) with a JSON report, read back for the figures. The command is printed; paste it against
`make up` to fuzz the real system (docs/runbook.md, "Fuzz the API").

The server is the API with its real job center and real store, seeded with a little of
everything for the documented examples (symbol XRPUSDT, model m20251121T101500Z-ab12cd), so
the 200 paths are fuzzed too, not only the 404s. Two stand-ins, both said here:
- ingest hands accepted records to a list instead of a dataflow: the decoders and the flow
  have their own fuzz tests (tests/dataflows, tests/tickcast); what is fuzzed here is the edge;
- jobs are cheap functions registered under the real kinds (train, recalibrate, labeler,
  backfill): the job center, its store rows and events, the rate limit and the answers are
  real; training itself is tested in tests/models. The rate limit stays at its defaults, and
  the test checks it bounds how many jobs the whole run could start (the issue: ~60 model
  versions in 4 minutes).

Left out: `positive_data_acceptance`. It expects every schema-valid request to succeed, and
some rules are not expressible in JSON Schema: `start` <= `end`, `close_time = open_time +
interval`, a candle's high >= low, a step that divides the bar, an EMA window among
SENTIMENT_EMA_WINDOWS, a job kind or symbol the system knows. Those get a 4xx that says why.
"""

from __future__ import annotations

import json
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import all_routes
from api.context import AppContext
from tests.api.conftest import KEY, Server, make_settings, start_server
from tests.api.test_admin import fake_model
from tickcast.bus import Event, IdClock, LocalBus
from tickcast.jobs import JobCenter
from tickcast.store import Store

SYMBOL = "XRPUSDT"  # the documented example
VERSION = "m20251121T101500Z-ab12cd"  # the documented example
T0 = 1_763_683_200_000
MIN = 60_000
MAX_EXAMPLES = 10
JOB_KINDS = ("train", "recalibrate", "labeler", "backfill", "backtest")


def seed(store: Store, registry: Path, ids: IdClock) -> None:
    """A little of every table, for SYMBOL and VERSION."""
    fake_model(registry, VERSION, created_ts=1.0, backup=True)
    fake_model(registry, "m20251121T090000Z-000000", created_ts=0.5)
    n = 60
    times = [T0 + MIN * i for i in range(1, n + 1)]
    key = {"symbol": SYMBOL, "interval": "1m"}
    store.insert_rows(
        "candles",
        [
            {**key, "open_time": t - MIN, "close_time": t, "open": 1.0, "high": 1.1, "low": 0.9, "close": 1.05}
            | {"volume": 10.0, "ingest_ts": t}
            for t in times
        ],
    )
    store.insert_rows(
        "sentiment_ticks",
        [
            {"id": f"t{i}", "symbol": SYMBOL, "ts": t - 1000, "score": 0.2, "polarity": 1, "provider": "newsapi"}
            | {"weight": 1.0, "meta": "{}", "ingest_ts": t - 900}
            for i, t in enumerate(times)
        ],
    )
    sent = {c: 0.1 for c in ("sent_score", "sent_pos_ratio", "sent_d1", "sent_d5", "sent_vol_30", "sent_composite")}
    store.insert_rows(
        "sentiment_bars",
        [
            {"symbol": SYMBOL, "step": "1m", "bar_end": t, "sent_cnt": 1, "imputed": 0, **sent}
            | {"sent_ema_5m": 0.1, "sent_ema_15m": 0.1, "sent_ema_60m": 0.1}
            for t in times
        ],
    )
    store.insert_rows(
        "features",
        [{**key, "close_time": t, "close": 1.05, "rsi_14": 50.0, "join_status": "ok", **sent} for t in times],
    )
    store.insert_rows(
        "predictions",
        [
            {**key, "close_time": t, "horizon": 1, "model_version": v, "prob": 0.2 + 0.6 * (i % 2)}
            | {"fallback_reason": "", "latency_ms": 1.0}
            for i, t in enumerate(times)
            for v in ("baseline", VERSION)
        ],
    )
    store.insert_rows(
        "labels",
        [
            {**key, "close_time": t, "horizon": 1, "label": i % 2, "close_t": 1.0, "close_th": 1.1}
            for i, t in enumerate(times)
        ],
    )
    window = {"window_seconds": 21_600, "n": 300, "ece": 0.05, "brier": 0.2, "roc_auc": 0.7, "pr_auc": 0.6}
    store.insert_rows(
        "calibration_windows",
        [
            {"model_version": VERSION, "scope": scope, "window_end": t, **window, "accuracy": 0.6, "ece_prod": 0.03}
            | {"delta_ece": 0.02, "abs_streak": 0, "rel_streak": 0, "delta_ece_ema": 0.01, "drift_on": 0}
            | {"state": "ok", "recommendation": "", "cooldown_remaining_s": 0.0, "bins": "[]"}
            for scope in ("overall", SYMBOL)
            for t in times[::10]
        ],
    )
    store.insert_rows(
        "drift_events",
        [
            {"event_id": "e1", "kind": "feature_drift", "ts": times[-1], "model_version": VERSION, "scope": "overall"}
            | {"feature": "rsi_14", "value": 3.5, "threshold": 3.0, "details": "{}"}
        ],
    )
    seed_trading(store, times)
    events = [
        Event(stream, ids.next(), {"symbol": SYMBOL, "n": i}, SYMBOL, times[i])
        for stream in ("sentiment", "predictions", "calibration", "events", "trading")
        for i in range(3)
    ]
    store.insert_rows("live_events", [e.row() for e in events])


def seed_trading(store: Store, times: list[int]) -> None:
    """The paper account trading SYMBOL through the real engine (entries, a stop, a refusal,
    a halt) and a backtest report, so the trading reads answer 200 with every kind of row."""
    from dataflows.trading.engine import Engine
    from dataflows.trading.items import TradeControl
    from tests.api.test_trading_api import store_out
    from tests.dataflows.trading.bars import bar, config, run_steps

    engine = Engine(config(account="paper", base_size=1_000.0, max_concurrent=1, atr_stop=1.0, atr_take_profit=2.0))
    probs = [0.9, 0.6, 0.3, 0.9, 0.9, 0.2] * 3
    bars = [bar(SYMBOL, t, o=1.0 + 0.01 * (i % 5), p=p, atr=0.02) for i, (t, p) in enumerate(zip(times, probs))]
    bars += [bar("ETHUSDT", times[0], p=0.95)]  # refused: one position at most
    out = run_steps(engine, bars)
    engine.apply_control(TradeControl("c1", "halt", times[len(probs)] + 5, "fuzz", "seed"), out)
    store_out(store, out)
    report = {"report_id": "abc123", "created_at": times[-1], "account": "backtest", "source": "store"}
    report["report"] = {"total_return": 0.01, "per_symbol": {SYMBOL: {"net_pnl": 1.0}}}
    store.insert_rows(
        "backtest_reports",
        [
            {"report_id": "abc123", "account": "backtest", "created_at": times[-1], "source": "store"}
            | {"start_ts": times[0], "end_ts": times[-1], "report": json.dumps(report)}
        ],
    )


@pytest.fixture(scope="module")
def fuzz_server(api_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    registry = tmp_path_factory.mktemp("fuzz-registry")

    def factory(box: Server) -> AppContext:
        bus, ids = LocalBus(), IdClock()
        jobs = JobCenter(api_store, bus=bus, ids=ids, min_interval_s=0.05)
        for kind in JOB_KINDS:
            jobs.register(kind, lambda params, progress: {"ok": True})
        seed(api_store, registry, ids)
        return AppContext(
            # Defaults for the rate limit; streams end after 50 ms so the fuzzer reads whole bodies.
            settings=make_settings(SSE_MAX_STREAM_SECONDS=0.05, API_JOB_RATE_PER_HOUR=12, API_JOB_RATE_BURST=3),
            store=api_store,
            bus=bus,
            ingest=box.ingested.extend,
            jobs=jobs,
            registry_root=registry,
            id_clock=ids,
        )

    yield from start_server(factory)


def run_schemathesis(base: str, report: Path) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{base}/openapi.json",
        "--header",
        f"X-API-Key: {KEY}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "15",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=report.parent)
    return command, proc


def test_schemathesis_finds_nothing(fuzz_server: Server, tmp_path: Path) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    started = time.monotonic()
    command, proc = run_schemathesis(fuzz_server.base, tmp_path / "schemathesis.json")
    elapsed = time.monotonic() - started
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    report: dict[str, Any] = json.loads((tmp_path / "schemathesis.json").read_text())
    cases, ops = report["test_cases"], report["operations"]
    started_jobs = {kind: len(fuzz_server.ctx.jobs.list(kind, 1000)) for kind in JOB_KINDS}
    print(
        f"\nschemathesis {report['schemathesis_version']}: {cases['generated']} test cases over "
        f"{ops['tested']}/{ops['total']} operations in {elapsed:.0f} s; failures: {report['failures']}; "
        f"server peak RSS growth {growth_mib:.0f} MiB; jobs started {started_jobs}\n$ {shlex.join(command)}"
    )
    assert proc.returncode == 0 and not report["failures"] and not report["errors"], proc.stdout[-6000:]
    routes = {(r.path, m) for r in all_routes() for m in (r.methods or ()) if m != "HEAD"}
    # Every endpoint, streams, ingest and jobs included; schemathesis leaves out the document itself.
    assert ops["tested"] == ops["total"] == len(routes - {("/openapi.json", "GET")})
    assert all(phase["status"] == "success" for phase in report["phases"].values()), report["phases"]
    assert cases["generated"] >= 1000
    assert growth_mib < 512  # bounded bodies (API_MAX_BODY_BYTES), bounded parameters, no unbounded work

    # The rate limit bounds what a fuzzer can start: per kind, the burst plus one per
    # 3600/API_JOB_RATE_PER_HOUR seconds of the run.
    settings = fuzz_server.ctx.settings
    bound = settings.API_JOB_RATE_BURST + int(elapsed * settings.API_JOB_RATE_PER_HOUR / 3600) + 1
    assert all(n <= bound for n in started_jobs.values()), (started_jobs, bound)
    assert started_jobs["train"] >= 1  # the job endpoints were reached, not only refused


def test_openapi_describes_every_route_and_every_json_response(fuzz_server: Server) -> None:
    with fuzz_server.client() as c:
        doc = c.get("/openapi.json").json()
    routes = {(r.path, m.lower()) for r in all_routes() for m in (r.methods or ()) if m != "HEAD"}
    described = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert described == routes
    history = doc["paths"]["/api/sentiment/history"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"symbol", "start", "end", "step", "agg"}
    assert doc["paths"]["/admin/models/promote"]["post"]["security"] == [{"ApiKeyHeader": []}]  # no key in URLs
    assert {"ApiKeyQuery": []} in doc["paths"]["/stream/events"]["get"]["security"]  # EventSource
    missing = [
        f"{method.upper()} {path} {status}"
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for status, response in op["responses"].items()
        if int(status) < 300
        and "application/json" in response["content"]
        and not response["content"]["application/json"]["schema"]
    ]
    assert not missing, f"describe these responses with returns= in their @spec: {missing}"
    retrain = doc["paths"]["/admin/manual-retrain"]["post"]["responses"]
    assert retrain["429"]["headers"]["Retry-After"]["required"] is True
    assert doc["paths"]["/api/sentiment/tick"]["post"]["responses"]["415"]
