"""History and calibration reads over rows the test writes itself; numbers checked against
pandas / NumPy / scikit-learn / statsmodels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from tickcast.bus import Event

T0 = 1_763_683_200_000  # 2025-11-21T00:00:00Z, a whole day
MIN = 60_000
EMA_COLS = ("sent_ema_5m", "sent_ema_15m", "sent_ema_60m")


def bars_frame(symbol: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.uniform(-1, 1, n)
    score[rng.random(n) < 0.1] = np.nan  # empty bars with impute=none
    df = pd.DataFrame(
        {
            "symbol": symbol,
            "step": "1m",
            "bar_end": T0 + MIN * np.arange(1, n + 1),
            "sent_score": score,
            "sent_cnt": rng.integers(0, 9, n).astype(np.uint32),
            "sent_pos_ratio": rng.uniform(0, 1, n),
            "sent_d1": np.nan,
            "sent_d5": np.nan,
            "sent_vol_30": np.nan,
            "sent_ema_5m": rng.uniform(-1, 1, n),
            "sent_ema_15m": rng.uniform(-1, 1, n),
            "sent_ema_60m": rng.uniform(-1, 1, n),
            "sent_composite": np.nan,
            "imputed": np.uint8(0),
        }
    )
    return df


def insert_df(store, table: str, df: pd.DataFrame) -> None:
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")
    ]
    store.insert_rows(table, rows)


@pytest.fixture(scope="module")
def bars(server) -> pd.DataFrame:
    df = bars_frame("SENTA", 300, seed=1)
    insert_df(server.ctx.store, "sentiment_bars", df)
    insert_df(server.ctx.store, "sentiment_bars", df.iloc[:50])  # a replay: FINAL must not double it
    return df


# --- sentiment --------------------------------------------------------------------------------
def oracle_history(df: pd.DataFrame, start: int, end: int, step: int, agg: str) -> pd.DataFrame:
    sel = df[(df.bar_end > start) & (df.bar_end <= end)].copy()
    sel["t"] = -(-sel.bar_end // step) * step  # ceil to the bucket end
    cols = ["sent_score", *EMA_COLS]
    g = sel.groupby("t")
    if agg == "last":
        out = g[cols].agg(lambda s: s.dropna().iloc[-1] if s.notna().any() else np.nan)
    else:
        out = g[cols].agg({"mean": "mean", "min": "min", "max": "max", "count": "count"}[agg])
    out["ticks"] = g["sent_cnt"].sum()
    out["bars"] = g.size()
    return out.reset_index()


@pytest.mark.parametrize("agg", ["mean", "min", "max", "last", "count"])
@pytest.mark.parametrize(("step", "start_off", "end_off"), [("1m", 0, 120), ("5m", 7, 293), ("1h", 0, 300)])
def test_history_matches_pandas(server, bars, agg: str, step: str, start_off: int, end_off: int) -> None:
    step_ms = {"1m": MIN, "5m": 5 * MIN, "1h": 60 * MIN}[step]
    start, end = T0 + start_off * MIN + 1234, T0 + end_off * MIN
    with server.client() as c:
        r = c.get(
            "/api/sentiment/history", params={"symbol": "SENTA", "start": start, "end": end, "step": step, "agg": agg}
        )
    assert r.status_code == 200, r.text
    got = pd.DataFrame(r.json()["points"])
    want = oracle_history(bars, start, end, step_ms, agg)
    assert got["t"].tolist() == want["t"].tolist()
    for col in ["sent_score", *EMA_COLS, "ticks", "bars"]:
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-9, equal_nan=True)


def test_history_iso_times_and_default_step(server, bars) -> None:
    with server.client() as c:
        r = c.get(
            "/api/sentiment/history",
            params={"symbol": "SENTA", "start": "2025-11-21T00:00:00Z", "end": "2025-11-21T01:00:00+00:00"},
        )
    body = r.json()
    assert r.status_code == 200 and body["start"] == T0 and body["end"] == T0 + 60 * MIN and body["step_ms"] == MIN
    assert len(body["points"]) == 60 and body["agg"] == "mean"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start": T0 + 10 * MIN, "end": T0}, "is after 'end'"),
        ({"start": T0, "end": T0 + 1000 * MIN, "step": "1m"}, "maximum is 500"),
        ({"step": "30s"}, "'step'"),
        ({"step": "1x"}, "'step'"),
        ({"agg": "median"}, "'agg' must be one of mean, min, max, last, count"),
        ({"start": "yesterday"}, "epoch milliseconds"),
        ({"start": "1763683200"}, "between years 2000 and 2100"),  # seconds, not ms
    ],
)
def test_history_bad_input(server, bars, params: dict, fragment: str) -> None:
    with server.client() as c:
        r = c.get("/api/sentiment/history", params={"symbol": "SENTA", "start": T0, "end": T0 + 60 * MIN, **params})
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_too_many_points_suggests_a_step(server, bars) -> None:
    with server.client() as c:
        r = c.get("/api/sentiment/history", params={"symbol": "SENTA", "start": T0, "end": T0 + 1000 * MIN})
    body = r.json()
    assert r.status_code == 400 and body["points"] == 1000 and body["max_points"] == 500
    assert "use step=2m" in body["error"]  # 1000 min / 500 points = 2 min


def test_history_unknown_symbol_404(server, bars) -> None:
    with server.client() as c:
        r = c.get("/api/sentiment/history", params={"symbol": "NOPE", "start": T0, "end": T0 + MIN})
        assert r.status_code == 404 and "SENTA" in r.json()["error"]  # names the known ones
        assert c.get("/api/sentiment/history", params={"symbol": "bad symbol"}).status_code == 400
        assert "missing required" in c.get("/api/sentiment/history").json()["error"]


def test_latest_from_store_then_bus(server, bars) -> None:
    last = bars.iloc[-1]
    with server.client() as c:
        r = c.get("/api/sentiment/latest", params={"symbol": "SENTA", "windows": "5m,60m"})
        body = r.json()
        assert r.status_code == 200 and body["source"] == "store" and body["as_of"] == int(last.bar_end)
        assert body["ema"] == {"5m": pytest.approx(last.sent_ema_5m), "60m": pytest.approx(last.sent_ema_60m)}
        event = Event(
            "sentiment",
            server.ctx.id_clock.next(),
            {
                "kind": "tick",
                "symbol": "SENTA",
                "as_of": T0 + 999,
                "sent_ema_5m": 0.1,
                "sent_ema_15m": 0.2,
                "sent_ema_60m": 0.3,
                "sent_composite": 0.0,
                "open_cnt": 2,
            },
            "SENTA",
            T0 + 999,
        )
        server.ctx.bus.publish(event)
        body = c.get("/api/sentiment/latest", params={"symbol": "SENTA"}).json()
        assert body["source"] == "live" and body["event_id"] == event.id and body["as_of"] == T0 + 999
        assert body["ema"] == {"5m": 0.1, "15m": 0.2, "60m": 0.3} and body["state"]["open_cnt"] == 2


def test_latest_bad_input(server, bars) -> None:
    with server.client() as c:
        r = c.get("/api/sentiment/latest", params={"symbol": "SENTA", "windows": "5m,2h"})
        assert r.status_code == 400 and "subset of 5m,15m,60m" in r.json()["error"]
        r = c.get("/api/sentiment/latest", params={"symbol": "UNKNOWN1"})
        assert r.status_code == 404 and r.json()["symbol"] == "UNKNOWN1"


def test_history_latency_metric(server, bars) -> None:
    with server.client() as c:
        before = _metric(c, "sentiment_history_query_latency_ms_count")
        c.get("/api/sentiment/history", params={"symbol": "SENTA", "start": T0, "end": T0 + 60 * MIN})
        assert _metric(c, "sentiment_history_query_latency_ms_count") == before + 1


def _metric(c, name: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- predictions / labels / candles / features ----------------------------------------------
@pytest.fixture(scope="module")
def market(server) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 400
    close_time = T0 + MIN * np.arange(1, n + 1)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    candles = pd.DataFrame(
        {
            "symbol": "MKT",
            "interval": "1m",
            "open_time": close_time - MIN,
            "close_time": close_time,
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 5.0,
            "ingest_ts": close_time,
        }
    )
    label = (np.r_[close[1:], close[-1]] > close).astype(np.uint8)
    prob = np.clip(0.5 + 0.35 * (label - 0.5) * 2 * rng.uniform(0, 1, n) + rng.normal(0, 0.15, n), 0.01, 0.99)
    preds = pd.DataFrame(
        {
            "symbol": "MKT",
            "interval": "1m",
            "close_time": close_time,
            "horizon": np.uint16(1),
            "model_version": "m1",
            "prob": prob,
            "fallback_reason": "",
            "latency_ms": 0.5,
        }
    )
    labels = pd.DataFrame(
        {
            "symbol": "MKT",
            "interval": "1m",
            "close_time": close_time[:-1],
            "horizon": np.uint16(1),
            "label": label[:-1],
            "close_t": close[:-1],
            "close_th": close[1:],
        }
    )
    feats = pd.DataFrame(
        {"symbol": "MKT", "interval": "1m", "close_time": close_time, "close": close, "join_status": "ok"}
    )
    for col in (
        "ret_1",
        "ret_5",
        "ret_15",
        "rv_30",
        "atr_14",
        "rsi_14",
        "vol_z_30",
        "hl_range",
        "sent_score",
        "sent_cnt",
        "sent_pos_ratio",
        "sent_d1",
        "sent_d5",
        "sent_vol_30",
        *EMA_COLS,
        "sent_composite",
    ):
        feats[col] = rng.normal(size=n)
    store = server.ctx.store
    for table, df in (("candles", candles), ("predictions", preds), ("labels", labels), ("features", feats)):
        insert_df(store, table, df)
    return {"candles": candles, "predictions": preds, "labels": labels, "features": feats}


@pytest.mark.parametrize("table", ["predictions", "labels", "candles", "features"])
def test_table_history(server, market, table: str) -> None:
    df = market[table]
    start, end = T0 + 100 * MIN, T0 + 200 * MIN
    want = df[(df.close_time >= start) & (df.close_time < end)].sort_values("close_time")
    with server.client() as c:
        r = c.get(f"/api/{table}", params={"symbol": "MKT", "start": start, "end": end, "limit": 10_000})
        assert r.status_code == 200
        rows = r.json()["rows"]
        assert [x["close_time"] for x in rows] == want.close_time.tolist()
        if table == "predictions":
            np.testing.assert_allclose([x["prob"] for x in rows], want.prob)
        # limit keeps the newest rows, still oldest first
        rows = c.get(f"/api/{table}", params={"symbol": "MKT", "start": start, "end": end, "limit": 5}).json()["rows"]
        assert [x["close_time"] for x in rows] == want.close_time.tolist()[-5:]


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"symbol": "MKT", "limit": 0}, 400, "'limit' must be in [1, 10000]"),
        ({"symbol": "MKT", "limit": "many"}, 400, "'limit' must be an integer"),
        ({"symbol": "MKT", "interval": "7m"}, 400, "'interval' must be one of"),
        ({"symbol": "MKT", "start": T0 + MIN, "end": T0}, 400, "is after 'end'"),
        ({"symbol": "ZZZ"}, 404, "no market data stored for symbol 'ZZZ'"),
        ({}, 400, "missing required query parameter 'symbol'"),
    ],
)
def test_table_history_bad_input(server, market, params: dict, status: int, fragment: str) -> None:
    with server.client() as c:
        r = c.get("/api/predictions", params=params)
    assert r.status_code == status and fragment in r.json()["error"]


# --- calibration ------------------------------------------------------------------------------
def oracle_report(prob: np.ndarray, label: np.ndarray, bins: int) -> dict:
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    ece = 0.0
    per_bin = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        if n:
            ece += n / len(prob) * abs(label[m].mean() - prob[m].mean())
            # CALIBRATION_WILSON_Z = 1.96 exactly, so alpha = 2 * (1 - Phi(1.96)) rather than 0.05
            lo, hi = proportion_confint(int(label[m].sum()), n, alpha=2 * norm.sf(1.96), method="wilson")
            per_bin.append((n, prob[m].mean(), label[m].mean(), lo, hi))
        else:
            per_bin.append((0, None, None, None, None))
    return {
        "n": len(prob),
        "ece": ece,
        "brier": brier_score_loss(label, prob),
        "roc_auc": roc_auc_score(label, prob),
        "pr_auc": average_precision_score(label, prob),
        "bins": per_bin,
    }


def test_calibration_bins_live_vs_reference(server, market) -> None:
    preds, labels = market["predictions"], market["labels"]
    joined = preds.merge(labels, on=["symbol", "interval", "close_time", "horizon"])
    end = int(joined.close_time.max())
    window_s = 3 * 3600
    sel = joined[(joined.close_time > end - window_s * 1000) & (joined.close_time <= end)]
    want = oracle_report(sel.prob.to_numpy(), sel.label.to_numpy().astype(float), 5)
    with server.client() as c:
        r = c.get("/api/calibration/bins", params={"model_version": "m1", "window": window_s})
    body = r.json()
    assert r.status_code == 200, body
    live = body["live"]
    assert live["n"] == want["n"] == 180 and body["window_end"] == end
    for key in ("ece", "brier", "roc_auc", "pr_auc"):
        assert live[key] == pytest.approx(want[key], rel=1e-9), key
    for got, (n, mp, rate, lo, hi) in zip(live["bins"], want["bins"], strict=True):
        assert got["n"] == n
        if n:
            assert (got["mean_prob"], got["pos_rate"], got["wilson_lo"], got["wilson_hi"]) == pytest.approx(
                (mp, rate, lo, hi), rel=1e-9
            )
            assert got["reliable"] == (n >= 3)
    assert body["production"] is None and body["delta_ece"] is None  # m1 is not in the registry
    assert body["enough_samples"] is True


def test_calibration_bins_scope_and_errors(server, market, bars) -> None:
    with server.client() as c:
        r = c.get("/api/calibration/bins", params={"model_version": "m1", "scope": "MKT"})
        assert r.status_code == 200 and r.json()["live"]["n"] == 360  # default window 6 h = 360 candles
        r = c.get("/api/calibration/bins", params={"model_version": "m1", "scope": "OTHER"})
        assert r.status_code == 404 and "known scopes: overall, " in r.json()["error"] and "MKT" in r.json()["known"]
        r = c.get("/api/calibration/bins", params={"model_version": "m1", "scope": "SENTA"})  # known, no predictions
        assert r.status_code == 200 and r.json()["live"]["n"] == 0 and r.json()["live"]["ece"] is None
        # Without a production model, the newest prediction's version is used.
        assert c.get("/api/calibration/bins").json()["model_version"] == "m1"
        assert c.get("/api/calibration/bins", params={"window": 5}).status_code == 400
        assert c.get("/api/calibration/bins", params={"scope": "no spaces"}).status_code == 400


def test_accuracy_trend_matches_pandas(server, market) -> None:
    joined = market["predictions"].merge(market["labels"], on=["symbol", "interval", "close_time", "horizon"])
    correct = ((joined.prob >= 0.5) == (joined.label == 1)).astype(float)
    recent = correct.iloc[-500:]  # ACCURACY_WINDOW default 500 > rows: all of them
    with server.client() as c:
        body = c.get("/api/accuracy/trend", params={"days": 3}).json()
    # All rows fall on 2025-11-21.
    assert body["trend"] == [{"date": "2025-11-21", "accuracy": pytest.approx(correct.mean()), "n": len(correct)}]
    assert body["current"]["accuracy"] == pytest.approx(recent.mean()) and body["current"]["n"] == len(correct)
    acc = recent.mean()
    expected = "GOOD" if acc >= 0.7 else "WARNING" if acc >= 0.5 else "CRITICAL"
    assert body["current"]["health"] == expected
    with server.client() as c:
        assert c.get("/api/accuracy/trend", params={"days": 0}).status_code == 400


def test_calibration_status_windows_and_drift(server) -> None:
    store = server.ctx.store
    rows = []
    for i, scope in enumerate(["overall", "overall", "overall", "XRPUSDT"]):
        rows.append(
            {
                "model_version": "mcal",
                "scope": scope,
                "window_end": T0 + i * 300_000,
                "window_seconds": 21600,
                "n": 500 + i,
                "ece": 0.1 + i / 100,
                "brier": 0.2,
                "roc_auc": 0.7,
                "pr_auc": 0.6,
                "accuracy": 0.6,
                "ece_prod": 0.03,
                "delta_ece": 0.07 + i / 100,
                "abs_streak": i,
                "rel_streak": i,
                "delta_ece_ema": 0.05,
                "drift_on": int(i == 2),
                "state": "drift" if i == 2 else "ok",
                "recommendation": "recalibrate" if i == 2 else "",
                "cooldown_remaining_s": 100.0,
                "bins": json.dumps([{"n": i}]),
            }
        )
    store.insert_rows("calibration_windows", rows)
    prediction = {"symbol": "XRPUSDT", "interval": "1m", "horizon": 1, "prob": 0.5, "fallback_reason": ""}
    store.insert_rows(  # windows come from predictions: the version has some
        "predictions", [{**prediction, "close_time": T0, "model_version": "mcal", "latency_ms": 0.0}]
    )
    store.insert_rows(
        "drift_events",
        [
            {
                "event_id": f"e{i}",
                "kind": kind,
                "ts": T0 + i * 1000,
                "model_version": "mcal",
                "scope": "overall",
                "feature": "sent_score" if kind == "feature_drift" else "",
                "value": 3.5,
                "threshold": 3.0,
                "details": json.dumps({"i": i}),
            }
            for i, kind in enumerate(["feature_drift", "calibration_drift", "feature_drift"])
        ],
    )
    with server.client() as c:
        body = c.get("/api/calibration/status", params={"model_version": "mcal"}).json()
        assert {s["scope"] for s in body["scopes"]} == {"overall", "XRPUSDT"}
        overall = body["overall"]
        assert overall["window_end_ms"] == T0 + 600_000 and overall["drift_on"] is True
        assert overall["recommendation"] == "recalibrate" and overall["abs_streak"] == 2
        body = c.get("/api/calibration/windows", params={"model_version": "mcal", "include_bins": "true"}).json()
        assert [w["window_end_ms"] for w in body["windows"]] == [T0, T0 + 300_000, T0 + 600_000]
        assert body["windows"][1]["bins"] == [{"n": 1}]
        assert "bins" not in c.get("/api/calibration/windows", params={"limit": 1}).json()["windows"][0]
        ev = c.get("/api/drift/events", params={"kind": "feature_drift"}).json()["events"]
        assert [e["event_id"] for e in ev] == ["e2", "e0"] and ev[0]["details"] == {"i": 2}
        assert len(c.get("/api/drift/events", params={"limit": 2}).json()["events"]) == 2
        assert c.get("/api/drift/events", params={"limit": 100_000}).status_code == 400
        assert c.get("/api/calibration/windows", params={"include_bins": "maybe"}).status_code == 400


def test_healthz_and_metrics(server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {
            "status": "ok",
            "store": True,
            "flow": True,
            "broker": None,
            "store_writes": None,  # no sinks in this process (as on an API replica)
        }
        server.flow_ok[0] = False
        try:
            r = c.get("/healthz")
            assert r.status_code == 503 and r.json()["failing"] == ["flow"] and "dataflow" in r.json()["error"]
        finally:
            server.flow_ok[0] = True
        text = c.get("/metrics").text
        assert "sentiment_sse_clients" in text and "ml_retrains_total" in text
