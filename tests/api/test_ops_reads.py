"""Operator answers that must not mislead (issue 17): accuracy health per model version,
ΔECE without a verdict below CALIBRATION_DRIFT_MIN_SAMPLES, restore only where a backup
exists. Numbers are checked against pandas over the rows the test wrote."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.api.test_admin import fake_model
from tests.api.test_reads import MIN, T0, insert_df

# make_settings (tests/api/conftest.py): CALIBRATION_DRIFT_MIN_SAMPLES=10; ACCURACY_MIN_SAMPLES default 100


@pytest.fixture(scope="module")
def two_versions(server) -> pd.DataFrame:
    """The baseline served 300 candles of symbol ACC (always wrong), then model m-new 40 (always right)."""
    rng = np.random.default_rng(7)
    n_base, n_new = 300, 40
    close = T0 + MIN * np.arange(n_base + n_new)
    prob = rng.uniform(0.05, 0.95, close.size)
    version = np.array(["baseline"] * n_base + ["m-new"] * n_new)
    right = version == "m-new"
    label = np.where(right, prob >= 0.5, prob < 0.5).astype(np.uint8)
    preds = pd.DataFrame(
        {
            "symbol": "ACC",
            "interval": "1m",
            "close_time": close,
            "horizon": 1,
            "model_version": version,
            "prob": prob,
            "fallback_reason": np.where(right, "", "no_model"),
            "latency_ms": 1.0,
        }
    )
    labels = pd.DataFrame(
        {
            "symbol": "ACC",
            "interval": "1m",
            "close_time": close,
            "horizon": 1,
            "label": label,
            "close_t": 1.0,
            "close_th": 1.0,
        }
    )
    insert_df(server.ctx.store, "predictions", preds)
    insert_df(server.ctx.store, "labels", labels)
    return preds.merge(labels, on=["symbol", "interval", "close_time", "horizon"])


def test_accuracy_is_per_version_and_insufficient_below_min_samples(server, two_versions) -> None:
    df = two_versions
    right = (df.prob >= 0.5) == (df.label == 1)
    with server.client() as c:
        new = c.get("/api/accuracy/trend", params={"model_version": "m-new"}).json()
        base = c.get("/api/accuracy/trend", params={"model_version": "baseline"}).json()
        default = c.get("/api/accuracy/trend").json()
    own = right[df.model_version == "m-new"]
    assert new["current"]["n"] == len(own) == 40 and new["current"]["accuracy"] == pytest.approx(own.mean())
    assert new["current"]["health"] == "INSUFFICIENT_DATA"  # 40 < ACCURACY_MIN_SAMPLES (100)
    assert new["trend"][0]["n"] == 40  # the trend is the version's own rows too
    b = right[df.model_version == "baseline"].tail(500)
    assert base["current"]["accuracy"] == pytest.approx(b.mean()) and base["current"]["health"] == "CRITICAL"
    # no production model: the default is the newest serving version, never a mix of the two
    assert default["model_version"] == "m-new" and default["current"]["n"] == 40
    by = {v["model_version"]: v for v in new["versions"]}
    assert by["m-new"]["health"] == "INSUFFICIENT_DATA" and by["baseline"]["health"] == "CRITICAL"
    assert by["baseline"]["n"] == 300 and by["baseline"]["accuracy"] == pytest.approx(0.0)
    assert new["thresholds"]["min_samples"] == 100


def test_delta_ece_has_no_verdict_below_min_samples(server, two_versions) -> None:
    root = server.ctx.registry_root
    fake_model(root, "m-new", created_ts=10.0, ece=0.01)  # a reference ECE of 0.01: ΔECE is large
    with server.client() as c:
        few = c.get("/api/calibration/bins", params={"model_version": "m-new", "scope": "ACC", "window": 300}).json()
        many = c.get("/api/calibration/bins", params={"model_version": "baseline", "scope": "ACC"}).json()
    assert few["live"]["n"] == 5 < few["min_samples"] == 10  # 5 labeled minutes in the 300 s window
    assert few["delta_ece"] is not None and few["delta_ece"] > 0.1  # a large ΔECE ...
    assert few["verdict"] == "insufficient_data" and few["enough_samples"] is False  # ... but no verdict on it
    assert many["verdict"] == "no_reference"  # the baseline has no production ECE


def test_restore_offered_only_for_versions_with_a_backup(server) -> None:
    root = server.ctx.registry_root
    fake_model(root, "m-kept", created_ts=20.0, backup=True)
    fake_model(root, "m-plain", created_ts=21.0)
    with server.client() as c:
        models = {m["version"]: m for m in c.get("/api/models").json()["models"]}
    assert models["m-kept"]["has_backup"] is True and models["m-plain"]["has_backup"] is False
