"""A real Prometheus (Debian's package, the version the test command installs) scraping a
running `tickcast up` (issue 17): every seed metric (DESIGN §10) has a series, the rendered
rules load, a rule fires when its condition is forced through a setting and a toggled-off
rule is absent; the seed's log lines and retrain_metadata.json exist as seed 004 says."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.live_server import TickcastServer
from tests.conftest import free_port
from tests.ops.test_alert_rules import ROOT, promtool
from tickcast.alerts import render_rules
from tickcast.settings import Settings

pytestmark = pytest.mark.e2e

SEED_METRICS = (
    "sentiment_ingest_total",
    "sentiment_ingest_errors_total",
    "sentiment_ingest_latency_ms",
    "sentiment_history_query_latency_ms",
    "sentiment_sse_clients",
    "feature_sentiment_join_attempts_total",
    "feature_sentiment_join_missing_total",
    "inference_calibration_drift_events_total",
    "calibration_retrain_recommend_events_total",
    "calibration_retrain_cooldown_seconds",
    "ml_accuracy",
    "ml_inference_time_seconds",
    "ml_retrains_total",
)


def _design_metric_names() -> set[str]:
    """The seed names listed in docs/design.md §10 (the contract), to keep SEED_METRICS honest."""
    import re

    text = (ROOT / "docs" / "design.md").read_text()
    section = text[text.index("## 10. Prometheus names") : text.index("## 11.")]
    return set(re.findall(r"`([a-z_]+)`", section.split("—")[0]))


class Prometheus:
    def __init__(self, workdir: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{rules}]\n"
            "scrape_configs:\n"
            f"  - job_name: tickcast-up\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        promtool()  # installs the package when missing (scripts/ensure-prometheus.sh)
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.proc.returncode}"
            try:
                last = predicate()
                if last:
                    return last
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError(f"waited {timeout:.0f} s for {what}; last: {last}")

    def stop(self) -> None:
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(tickcast_up: TickcastServer) -> Iterator[Prometheus]:
    workdir = Path(tempfile.mkdtemp(prefix="tickcast-prom-"))
    # Forced through settings: a 1 µs inference threshold (always exceeded), no waiting (`for`),
    # and one alert toggled off.
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        METRICS_ALERT_FOR_SECONDS=0,
        METRICS_ALERT_INFERENCE_SECONDS=0.000001,
        METRICS_ALERT_STORE_WRITE_FAILURES=False,
    )
    rules = workdir / "alerts.yml"
    rules.write_text(render_rules(settings))
    prom = Prometheus(workdir, tickcast_up.url.removeprefix("http://"), rules)
    try:
        prom.wait(lambda: httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200, 60, "Prometheus to be ready")
        yield prom
    finally:
        prom.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_every_seed_metric_has_a_series(prometheus: Prometheus, tickcast_up: TickcastServer) -> None:
    assert set(SEED_METRICS) == _design_metric_names()
    prometheus.wait(
        lambda: any(t["health"] == "up" for t in prometheus.get("/api/v1/targets")["activeTargets"]),
        60,
        "the tickcast target to be up",
    )
    tickcast_up.get("/api/sentiment/history", symbol=tickcast_up.get("/api/ui-config")["symbols"][0])

    def missing() -> list[str]:
        absent = []
        for name in SEED_METRICS:
            match = f'{{__name__=~"{name}|{name}_count"}}'  # a histogram's series are name_count, name_bucket…
            if not prometheus.get("/api/v1/series", **{"match[]": match}):
                absent.append(name)
        return absent

    prometheus.wait(lambda: not missing() or None, 60, f"a series for every seed metric (missing {missing()})")


def test_rules_load_and_a_forced_rule_fires(prometheus: Prometheus) -> None:
    groups = prometheus.get("/api/v1/rules")["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    assert {"TickcastInferenceSlow", "TickcastAccuracyCritical", "TickcastPredictionFallbacks"} <= loaded
    assert "TickcastStoreWriteFailures" not in loaded  # METRICS_ALERT_STORE_WRITE_FAILURES=false
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups

    def firing() -> dict[str, dict[str, Any]]:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        return {a["labels"]["alertname"]: a for a in alerts if a["state"] == "firing"}

    alerts = prometheus.wait(lambda: "TickcastInferenceSlow" in firing() and firing(), 60, "the forced alert to fire")
    slow = alerts["TickcastInferenceSlow"]
    assert slow["labels"]["severity"] == "warning" and 0.000001 < float(slow["value"]) < 5
    assert (
        slow["annotations"]["summary"].startswith("Inference takes ") and "per batch" in slow["annotations"]["summary"]
    )
    # what the defaults would not raise here: the normal thresholds keep the other alerts quiet
    assert not {"TickcastAccuracyCritical", "TickcastSentimentIngestErrors", "TickcastRejectedRecords"} & set(alerts)


def test_seed_log_lines_and_retrain_metadata(tickcast_up: TickcastServer) -> None:
    log = tickcast_up.log_tail(10_000_000)
    assert "Falling back to statistical mode" in log  # the backfill was served by the baseline
    assert "Retraining started: job" in log and "Retraining finished: job" in log  # the bootstrap model
    metadata = json.loads((tickcast_up.workdir / "models" / "metadata" / "retrain_metadata.json").read_text())
    production = tickcast_up.get("/api/models")["production"]
    assert metadata["last_run"]["kind"] in ("train", "recalibrate") and metadata["status"] in ("succeeded", "failed")
    assert metadata["versions"]["production"] == production  # kept current by promotions too
    status = tickcast_up.get("/admin/scheduler-status")
    assert metadata["next_run"] == status["next_run"] and metadata["timezone"] == status["timezone"] == "Asia/Seoul"
