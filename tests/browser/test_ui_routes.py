"""The dashboard's own endpoints without a browser: feature-drift z and provider mix against
pandas on rows stored in the real ClickHouse engine, the API-key hand-out rule, the page and
its static files. (Lives next to the browser tests; needs no browser.)
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import sql
from api.app import create_app
from api.context import AppContext
from api.routes_ui import FEATURE_COLUMNS, drift_report, hand_out_key
from models.feature_drift import rolling_z
from tickcast.bus import IdClock, LocalBus
from tickcast.jobs import JobCenter
from tickcast.settings import Settings
from tickcast.store import Store

with warnings.catch_warnings():  # starlette suggests httpx2; the httpx transport still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T0 = 1_763_683_200_000
VERSION = "m-test-1"
FEATURES = ("ret_1", "rsi_14", "sent_score")


def _settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **{"API_KEYS": "k1,k2", **overrides})  # type: ignore[call-arg]


def _oracle_z(values: pd.Series, window: int, mu: float, sigma: float) -> pd.Series:
    present = values.dropna()
    return (present.rolling(window).mean() - mu) / (sigma / math.sqrt(window))


def test_rolling_z_matches_pandas_and_skips_missing_values() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(0.3, 2.0, 500)
    values[rng.random(500) < 0.2] = np.nan
    t = np.arange(500) * 60_000 + T0
    z_t, z = rolling_z(t, values, 40, 0.1, 1.7)
    oracle = _oracle_z(pd.Series(values, index=t), 40, 0.1, 1.7).dropna()
    np.testing.assert_array_equal(z_t, oracle.index.to_numpy())
    np.testing.assert_allclose(z, oracle.to_numpy(), rtol=1e-9, atol=1e-12)
    assert rolling_z(t[:10], values[:10], 40, 0.0, 1.0)[1].size == 0  # fewer values than the window


def _feature_rows(rng: np.random.Generator, symbols: tuple[str, ...], n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        for s, symbol in enumerate(symbols):
            row: dict[str, Any] = {c: None for c in FEATURE_COLUMNS}
            row.update(
                symbol=symbol,
                interval="1m",
                close_time=T0 + i * 60_000,
                close=100.0 + i,
                join_status="ok",
                ret_1=float(rng.normal(0.001 * (s + 1), 0.01)),
                rsi_14=float(rng.normal(55, 10)),
                sent_score=None if rng.random() < 0.3 else float(rng.uniform(-1, 1)),
            )
            rows.append(row)
    return rows


def test_feature_drift_rows_and_report_match_pandas(store: Store) -> None:
    rng = np.random.default_rng(11)
    rows = _feature_rows(rng, ("AAAUSDT", "BBBUSDT"), 150)
    store.insert_rows("features", rows)
    meta = {
        "version": VERSION,
        "feature_names": [*FEATURES, "not_a_column"],
        "train_mean": {"ret_1": 0.0, "rsi_14": 50.0, "sent_score": 0.0, "not_a_column": 1.0},
        "train_std": {"ret_1": 0.01, "rsi_14": 10.0, "sent_score": 0.5, "not_a_column": 1.0},
    }
    frame = pd.DataFrame(rows).sort_values(["close_time", "symbol"])

    for symbol, limit, window in (("", 220, 50), ("BBBUSDT", 120, 30)):
        table = store.arrow(
            sql.query("feature_drift_rows"), {"symbol": symbol, "interval": "", "limit": limit, "end": T0 + 10**10}
        )
        expected = (frame if not symbol else frame[frame.symbol == symbol]).tail(limit)
        assert table.column("t").to_pylist() == expected.close_time.tolist()  # newest `limit`, oldest first
        report = drift_report(table, meta, window, 2.0, points=25, flow_state={})
        assert [f["name"] for f in report["features"]] == list(FEATURES)  # unknown columns are skipped
        times = np.asarray(report["times"])
        assert (
            times.size == 25 and times[0] == expected.close_time.iloc[0] and times[-1] == expected.close_time.iloc[-1]
        )
        for f in report["features"]:
            series = pd.Series(expected[f["name"]].to_numpy(dtype=float), index=expected.close_time.to_numpy())
            oracle = _oracle_z(series, window, meta["train_mean"][f["name"]], meta["train_std"][f["name"]]).dropna()
            assert math.isclose(f["z"], oracle.iloc[-1], rel_tol=1e-9)
            assert f["breach"] == (abs(oracle.iloc[-1]) >= 2.0)
            assert math.isclose(f["mean"], series.dropna().tail(window).mean(), rel_tol=1e-9)
            # each sampled point is the latest z at or before that time (the last row of a shared time)
            asof = oracle.groupby(level=0).last().reindex(times, method="ffill")
            for got, want in zip(f["series"], asof.to_numpy(), strict=True):
                assert (got is None and np.isnan(want)) or math.isclose(got, want, rel_tol=1e-9)


def test_provider_mix_matches_pandas(store: Store) -> None:
    rng = np.random.default_rng(3)
    providers = ("newsapi", "reddit", "twitter")
    ticks = []
    for i in range(400):
        p = providers[int(rng.integers(0, 3))]
        score = float(rng.uniform(-1, 1))
        ticks.append(
            {
                "id": f"t{i}",
                "symbol": "XRPUSDT",
                "ts": T0 + i * 20_000,
                "score": score,
                "polarity": 1 if score > 0 else -1,
                "provider": p,
                "weight": {"newsapi": 0.8}.get(p, 1.0),
                "meta": "{}",
                "ingest_ts": T0 + i * 20_000 + 50,
            }
        )
    store.insert_rows("sentiment_ticks", ticks)
    rows = store.named("feature_provider_mix", {"symbol": "XRPUSDT", "minutes": 30})
    df = pd.DataFrame(ticks)
    recent = df[df.ts > df.ts.max() - 30 * 60_000]
    oracle = recent.groupby("provider").agg(
        ticks=("id", "count"),
        weight=("weight", "sum"),
        mean=("score", "mean"),
        positive=("polarity", lambda s: int((s == 1).sum())),
    )
    assert sorted(r["provider"] for r in rows) == sorted(oracle.index)
    for r in rows:
        o = oracle.loc[r["provider"]]
        assert (int(r["ticks"]), int(r["positive"])) == (o.ticks, o.positive)
        assert math.isclose(r["weight"], o.weight) and math.isclose(r["mean_score"], o["mean"], rel_tol=1e-9)
        assert int(r["end_ms"]) == df.ts.max()


@pytest.mark.parametrize(
    ("overrides", "client", "expected"),
    [
        ({}, "127.0.0.1", "k1"),
        ({"TICKCAST_API_HOST": "localhost"}, "::1", "k1"),
        ({"TICKCAST_API_HOST": "0.0.0.0"}, "127.0.0.1", None),  # reachable from other hosts
        ({}, "10.1.2.3", None),
        ({"TICKCAST_CLICKHOUSE_URL": "http://ch:8123"}, "127.0.0.1", None),  # distributed mode
        ({"API_KEYS": ""}, "127.0.0.1", None),
    ],
)
def test_the_key_is_handed_out_only_in_embedded_mode_on_loopback(
    overrides: dict[str, str], client: str, expected: str | None
) -> None:
    ctx: Any = SimpleNamespace(settings=_settings(**overrides))
    assert hand_out_key(ctx, client, host_header="127.0.0.1:8000") == expected


@pytest.mark.parametrize(
    ("host", "origin", "fetch_site", "expected"),
    [
        ("127.0.0.1:8000", None, "same-origin", "k1"),  # the dashboard's own fetch
        ("localhost:8000", None, None, "k1"),  # curl on the same machine
        ("[::1]:8000", "http://[::1]:8000", "same-origin", "k1"),
        ("127.0.0.1:8000", None, "none", "k1"),  # typed into the address bar
        ("evil.test:8000", None, "same-origin", None),  # DNS rebinding: evil.test resolves to 127.0.0.1
        ("127.0.0.1.nip.io:8000", None, "same-origin", None),
        ("127.0.0.1:8000", "http://evil.test", "cross-site", None),  # another site's page
        ("127.0.0.1:8000", None, "same-site", None),
        ("127.0.0.1:8000", "http://localhost:8000", None, None),  # Origin must be the page's own
        (None, None, None, None),
    ],
)
def test_the_key_needs_a_loopback_host_and_a_same_origin_request(
    host: str | None, origin: str | None, fetch_site: str | None, expected: str | None
) -> None:
    ctx: Any = SimpleNamespace(settings=_settings())
    assert hand_out_key(ctx, "127.0.0.1", host_header=host, origin=origin, fetch_site=fetch_site) == expected


@pytest.fixture()
def client(store: Store, tmp_path: Path) -> Any:
    models = tmp_path / "models"
    (models / "metadata").mkdir(parents=True)
    (models / "metadata" / f"{VERSION}.json").write_text(
        json.dumps(
            {
                "version": VERSION,
                "status": "production",
                "feature_names": ["rsi_14"],
                "train_mean": {"rsi_14": 50.0},
                "train_std": {"rsi_14": 10.0},
            }
        )
    )
    (models / "metadata" / "registry.json").write_text(json.dumps({"production": VERSION, "history": []}))
    bus, ids = LocalBus(), IdClock()
    jobs = JobCenter(store, bus=bus, ids=ids)
    ctx = AppContext(
        settings=_settings(VITE_DRIFT_WINDOW_DEFAULT=20),
        store=store,
        bus=bus,
        ingest=lambda r: None,
        jobs=jobs,
        registry_root=models,
        id_clock=ids,
    )
    with TestClient(create_app(ctx)) as c:
        yield c
    jobs.close()


def test_page_static_files_config_and_drift_endpoint(client: Any, store: Store) -> None:
    for path in ("/", "/ui"):
        page = client.get(path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "/static/app.js" in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["cache-control"] == "no-cache"
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code in (400, 404)  # nothing outside api/static

    cfg = client.get("/api/ui-config").json()
    assert cfg["api_key"] is None  # the test client is not a loopback address
    assert cfg["drift"] == {"window": 20, "z": 3.0, "backend_window": 200, "backend_z": 3.0}
    assert cfg["freshness"] == {"risk_fresh_ms": 15000, "sig_fresh_ms": 90000, "severe_lag_mult": 3.0}

    store.insert_rows("features", _feature_rows(np.random.default_rng(5), ("AAAUSDT",), 60))
    body = client.get("/api/drift/features", params={"z": "0.5", "points": 10}).json()
    assert (body["window"], body["z_threshold"], body["model_version"]) == (20, 0.5, VERSION)
    # VITE_DRIFT_WINDOW_DEFAULT=20 differs from the flow's DRIFT_WINDOW: the page is told it shows a what-if
    assert body["same_as_flow"] is False and body["flow"]["window"] == 200 and cfg["use_mocks"] is False
    assert [f["name"] for f in body["features"]] == ["rsi_14"] and len(body["times"]) == 10
    assert client.get("/api/drift/features", params={"window": "1"}).status_code == 400
    assert client.get("/api/drift/features", params={"model_version": "nope"}).status_code == 404

    paths = client.get("/openapi.json").json()["paths"]
    assert {"/", "/ui", "/static/{name}", "/api/ui-config", "/api/drift/features", "/api/sentiment/providers"} <= set(
        paths
    )
