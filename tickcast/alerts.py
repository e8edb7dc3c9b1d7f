"""Prometheus alert rules and scrape config, rendered from the settings.

`tickcast alerts render` writes `docker/prometheus/alerts.yml` and
`docker/prometheus/prometheus.yml`; the shipped files are this rendering of the default
settings (a test checks they agree), and `docker/prometheus/alerts.test.yml` tests the
rules with `promtool test rules`. Thresholds come from the settings the seeds name where
they name one (accuracy WARNING 50 % — `ACCURACY_WARNING`; inference > 1 s — seed 004;
calibration drift as the flow decides it with `CALIBRATION_*`), else from `METRICS_ALERT_*`;
each alert has a `METRICS_ALERT_<NAME>` toggle (seed 000's "major alert toggles").

Every alert names the metric it reads, and a rule's `for` is `METRICS_ALERT_FOR_SECONDS`
unless the flow already debounces the condition (drift streaks, recommendation cooldown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RULES_FILE", "SCRAPE_FILE", "render_rules", "render_scrape_config", "write_files"]

RULES_FILE = "alerts.yml"
SCRAPE_FILE = "prometheus.yml"
RUNBOOK = "docs/runbook.md#alerts"


@dataclass(frozen=True)
class Rule:
    toggle: str  # the METRICS_ALERT_* setting that turns it on
    name: str
    expr: str
    for_s: int | None  # None: METRICS_ALERT_FOR_SECONDS
    severity: str
    summary: str
    description: str


def _num(value: float) -> str:
    """A threshold as PromQL prints it: 0.05, 10, 1e-09 (no trailing .0 on integers)."""
    return f"{value:g}"


def _rules(s: Any) -> list[tuple[str, list[Rule]]]:
    warn_pct = _num(100 * s.ACCURACY_WARNING)
    return [
        (
            "tickcast-model",
            [
                Rule(
                    "METRICS_ALERT_CALIBRATION_DRIFT",
                    "TickcastCalibrationDriftOn",
                    "max by (model_version) (calibration_drift_on) == 1",
                    0,
                    "warning",
                    "Calibration drift is on for model {{ $labels.model_version }}",
                    "The flow turned calibration drift on (ΔECE streaks or strong drift, with the ΔECE EMA >= "
                    f"CALIBRATION_HYSTERESIS_ENTER={_num(s.CALIBRATION_HYSTERESIS_ENTER)}); it turns off at EMA <= "
                    f"CALIBRATION_HYSTERESIS_EXIT={_num(s.CALIBRATION_HYSTERESIS_EXIT)}. Calibration page; "
                    "GET /api/calibration/status.",
                ),
                Rule(
                    "METRICS_ALERT_RETRAIN_RECOMMENDED",
                    "TickcastRetrainRecommended",
                    'increase(calibration_retrain_recommend_events_total{recommendation="retrain_recommended"}[1h]) > 0',
                    0,
                    "warning",
                    "The calibration monitor recommended a retrain",
                    "Drift is on and Brier or PR-AUC degraded (calibration_retrain_recommend_events_total). "
                    "With AUTO_RETRAIN_ENABLED the job started by itself; otherwise POST /admin/manual-retrain.",
                ),
                Rule(
                    "METRICS_ALERT_ACCURACY_CRITICAL",
                    "TickcastAccuracyCritical",
                    f"ml_accuracy < {warn_pct}",
                    None,
                    "critical",
                    'Accuracy health CRITICAL: {{ $value | printf "%.1f" }} % < ' + warn_pct + " %",
                    "The serving model's own directional accuracy (ml_accuracy, over its last ACCURACY_WINDOW labeled "
                    f"predictions) is below ACCURACY_WARNING={_num(s.ACCURACY_WARNING)}. No value (NaN) while it has "
                    "fewer than ACCURACY_MIN_SAMPLES. Seed 004: emergency retrain (POST /admin/emergency-retrain).",
                ),
                Rule(
                    "METRICS_ALERT_FALLBACKS",
                    "TickcastPredictionFallbacks",
                    f"sum by (reason) (increase(prediction_fallbacks_total[5m])) > {_num(s.METRICS_ALERT_FALLBACKS_PER_5M)}",
                    None,
                    "warning",
                    '{{ $value | printf "%.0f" }} predictions in 5 min fell back to the baseline: {{ $labels.reason }}',
                    "Predictions were served by the statistical baseline (prediction_fallbacks_total) more than "
                    f"METRICS_ALERT_FALLBACKS_PER_5M={_num(s.METRICS_ALERT_FALLBACKS_PER_5M)} times in 5 min. "
                    'Process log: grep "Falling back to statistical mode".',
                ),
                Rule(
                    "METRICS_ALERT_INFERENCE_SLOW",
                    "TickcastInferenceSlow",
                    f"ml_inference_time_seconds > {_num(s.METRICS_ALERT_INFERENCE_SECONDS)}",
                    None,
                    "warning",
                    'Inference takes {{ $value | printf "%.2f" }} s per batch',
                    "The newest batch's inference time (ml_inference_time_seconds) is above "
                    f"METRICS_ALERT_INFERENCE_SECONDS={_num(s.METRICS_ALERT_INFERENCE_SECONDS)} (seed 004: > 1 s).",
                ),
            ],
        ),
        (
            "tickcast-ingest",
            [
                Rule(
                    "METRICS_ALERT_INGEST_ERRORS",
                    "TickcastSentimentIngestErrors",
                    "sum(rate(sentiment_ingest_errors_total[5m])) / clamp_min((sum(rate(sentiment_ingest_total[5m])) "
                    "or vector(0)) + sum(rate(sentiment_ingest_errors_total[5m])), 1e-09) > "
                    f"{_num(s.METRICS_ALERT_INGEST_ERROR_RATIO)}",
                    None,
                    "warning",
                    "{{ $value | humanizePercentage }} of sentiment ticks are refused",
                    "sentiment_ingest_errors_total by reason (invalid, duplicate, late, provider_disabled) against "
                    f"accepted ticks; above METRICS_ALERT_INGEST_ERROR_RATIO={_num(s.METRICS_ALERT_INGEST_ERROR_RATIO)}. "
                    "rejected_records holds each refusal with its reason.",
                ),
                Rule(
                    "METRICS_ALERT_REJECTED_RECORDS",
                    "TickcastRejectedRecords",
                    f"sum by (source) (rate(rejected_records_total[5m])) * 60 > {_num(s.METRICS_ALERT_REJECTED_PER_MINUTE)}",
                    None,
                    "warning",
                    '{{ $value | printf "%.1f" }} records/min rejected from {{ $labels.source }}',
                    "rejected_records_total above METRICS_ALERT_REJECTED_PER_MINUTE="
                    f"{_num(s.METRICS_ALERT_REJECTED_PER_MINUTE)} per minute; the table rejected_records has the reasons.",
                ),
                Rule(
                    "METRICS_ALERT_JOIN_MISSES",
                    "TickcastSentimentJoinMisses",
                    "sum(rate(feature_sentiment_join_missing_total[10m])) / "
                    f"clamp_min(sum(rate(feature_sentiment_join_attempts_total[10m])), 1e-09) > {_num(s.METRICS_ALERT_JOIN_MISS_RATIO)}",
                    None,
                    "warning",
                    "{{ $value | humanizePercentage }} of candles joined without usable sentiment",
                    "feature_sentiment_join_missing_total (no_sentiment, empty_bar, timeout, overflow) against "
                    "feature_sentiment_join_attempts_total; above METRICS_ALERT_JOIN_MISS_RATIO="
                    f"{_num(s.METRICS_ALERT_JOIN_MISS_RATIO)}. Seed 000: check the close_time rule, "
                    "SENTIMENT_STEP_DEFAULT and the EMA windows.",
                ),
                Rule(
                    "METRICS_ALERT_FLOW_LAG",
                    "TickcastFlowLag",
                    f"flow_event_lag_ms > {_num(1000 * s.METRICS_ALERT_FLOW_LAG_SECONDS)}",
                    None,
                    "warning",
                    'The flow is {{ $value | printf "%.0f" }} ms behind its input',
                    "flow_event_lag_ms (wall clock minus the newest ingest_ts processed) above "
                    f"METRICS_ALERT_FLOW_LAG_SECONDS={_num(s.METRICS_ALERT_FLOW_LAG_SECONDS)} s: input stopped or the "
                    "flow cannot keep up.",
                ),
                Rule(
                    "METRICS_ALERT_STORE_WRITE_FAILURES",
                    "TickcastStoreWriteFailures",
                    "sum by (table) (increase(store_write_errors_total[5m])) > 0",
                    0,
                    "critical",
                    "ClickHouse writes to {{ $labels.table }} fail",
                    "store_write_errors_total grew: inserts fail and are retried (at most 5 s apart) until the store "
                    "takes them; meanwhile the flow holds and ingest answers 503 once its buffer is full. GET /healthz "
                    "(store_writes); check the ClickHouse server or disk (runbook §2, Store failing).",
                ),
            ],
        ),
        (
            "tickcast-api",
            [
                Rule(
                    "METRICS_ALERT_SSE_CLIENTS_DROP",
                    "TickcastSseClientsDrop",
                    f"sum(sentiment_sse_clients) < {_num(1 - s.METRICS_ALERT_SSE_DROP_RATIO)} * "
                    "max_over_time(sum(sentiment_sse_clients)[15m:30s]) and "
                    f"max_over_time(sum(sentiment_sse_clients)[15m:30s]) >= {s.METRICS_ALERT_SSE_MIN_CLIENTS}",
                    None,
                    "warning",
                    "SSE clients dropped to {{ $value }}",
                    f"More than METRICS_ALERT_SSE_DROP_RATIO={_num(s.METRICS_ALERT_SSE_DROP_RATIO)} of the connected "
                    "SSE clients (sentiment_sse_clients) went away within 15 min. Seed 000: check proxy timeouts, "
                    "keep-alive and Last-Event-ID handling.",
                ),
                Rule(
                    "METRICS_ALERT_TARGET_DOWN",
                    "TickcastTargetDown",
                    'up{job=~"tickcast.*"} == 0',
                    None,
                    "critical",
                    "{{ $labels.job }} at {{ $labels.instance }} does not answer scrapes",
                    "Prometheus cannot scrape /metrics of this tickcast process (or METRICS_ENABLED=false).",
                ),
            ],
        ),
        (
            "tickcast-trading",
            [
                Rule(
                    "METRICS_ALERT_TRADING_GUARD_TRIPPED",
                    "TickcastTradingGuardTripped",
                    'max by (guard) (trading_guard_tripped{guard!="drawdown"}) == 1',
                    0,
                    "warning",
                    "Trading guard {{ $labels.guard }} blocks new entries",
                    "trading_guard_tripped: daily_loss (the day's loss reached RISK_DAILY_LOSS_CAP="
                    f"{_num(s.RISK_DAILY_LOSS_CAP)} of the day's starting equity; clears at the next "
                    f"00:00 {s.RISK_DAILY_LOSS_TIMEZONE}) or kill_switch (an admin halted; tickcast trading resume). "
                    "Open positions keep their stops, targets and exits. GET /api/trading/risk.",
                ),
                Rule(
                    "METRICS_ALERT_TRADING_DRAWDOWN_HALT",
                    "TickcastTradingDrawdownHalt",
                    'max(trading_guard_tripped{guard="drawdown"}) == 1',
                    0,
                    "critical",
                    "Trading halted: drawdown beyond RISK_MAX_DRAWDOWN",
                    f"Equity fell RISK_MAX_DRAWDOWN={_num(s.RISK_MAX_DRAWDOWN)} below its peak: no new entries until "
                    "an admin resets the guard (tickcast trading reset, or POST /admin/trading/reset-drawdown with "
                    'confirm). GET /api/trading/risk; grep "trading drawdown trip".',
                ),
                Rule(
                    "METRICS_ALERT_TRADING_REFUSALS",
                    "TickcastTradingRefusalsSpike",
                    "sum by (cause) (increase(trading_refused_entries_total[15m])) > "
                    f"{_num(s.METRICS_ALERT_TRADING_REFUSALS_PER_15M)} and sum by (cause) "
                    "(rate(trading_refused_entries_total[15m])) > "
                    f"{_num(s.METRICS_ALERT_TRADING_REFUSALS_SPIKE_RATIO)} * sum by (cause) "
                    "(rate(trading_refused_entries_total[6h]))",
                    None,
                    "warning",
                    '{{ $value | printf "%.0f" }} entries refused in 15 min: {{ $labels.cause }}',
                    "trading_refused_entries_total by cause: more than METRICS_ALERT_TRADING_REFUSALS_PER_15M="
                    f"{_num(s.METRICS_ALERT_TRADING_REFUSALS_PER_15M)} in 15 min and "
                    f"{_num(s.METRICS_ALERT_TRADING_REFUSALS_SPIKE_RATIO)}x the 6 h rate "
                    "(METRICS_ALERT_TRADING_REFUSALS_SPIKE_RATIO). Each refusal is a risk_events row: "
                    "GET /api/trading/risk-events?guard=<cause>.",
                ),
                Rule(
                    "METRICS_ALERT_TRADING_EQUITY_DROP",
                    "TickcastTradingEquityDrop",
                    "(max_over_time(trading_equity[1h]) - trading_equity) / clamp_min(max_over_time(trading_equity[1h]), "
                    f"1e-09) > {_num(s.METRICS_ALERT_TRADING_EQUITY_DROP_RATIO)}",
                    None,
                    "warning",
                    "Equity of {{ $labels.account }} fell {{ $value | humanizePercentage }} within 1 h",
                    "trading_equity (marked at every candle close) is more than METRICS_ALERT_TRADING_EQUITY_DROP_RATIO="
                    f"{_num(s.METRICS_ALERT_TRADING_EQUITY_DROP_RATIO)} below its 1 h high; the drawdown guard halts at "
                    f"RISK_MAX_DRAWDOWN={_num(s.RISK_MAX_DRAWDOWN)} from the all-time peak. GET /api/trading/equity?step=1m.",
                ),
                Rule(
                    "METRICS_ALERT_TRADING_EXCHANGE_ERRORS",
                    "TickcastTradingExchangeErrors",
                    "sum by (mode, status) (increase(trading_exchange_orders_total"
                    '{status=~"error|dropped|rejected|expired|canceled"}[5m])) > 0',
                    0,
                    "critical",
                    "Exchange orders fail ({{ $labels.mode }}): {{ $labels.status }}",
                    "trading_exchange_orders_total: orders sent to Binance (testnet/live mode) failed, were rejected or "
                    "were dropped (the send queue was full). The paper book still records the decision; the exchange "
                    'account may now differ from it. grep "exchange .* failed" in the process log.',
                ),
            ],
        ),
    ]


def _duration(seconds: int) -> str:
    return f"{seconds}s" if seconds % 60 else f"{seconds // 60}m"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_rules(settings: Any) -> str:
    """The rule file for `settings` (alerts whose toggle is off are left out, and listed)."""
    lines = [
        "# Prometheus alert rules for tickcast, rendered by `tickcast alerts render` from the settings",
        "# (METRICS_ALERT_*, ACCURACY_WARNING, CALIBRATION_*). Do not edit by hand: change the settings",
        "# and render again. Tested by `promtool test rules docker/prometheus/alerts.test.yml`.",
        "groups:",
    ]
    for group, rules in _rules(settings):
        active = [r for r in rules if getattr(settings, r.toggle)]
        lines += [f"  - name: {group}", "    rules:" if active else "    rules: []"]
        for r in active:
            for_s = settings.METRICS_ALERT_FOR_SECONDS if r.for_s is None else r.for_s
            lines += [
                f"      - alert: {r.name}  # toggle: {r.toggle}",
                f"        expr: {_quote(r.expr)}",
                f"        for: {_duration(for_s)}",
                "        labels:",
                f"          severity: {r.severity}",
                "        annotations:",
                f"          summary: {_quote(r.summary)}",
                f"          description: {_quote(r.description)}",
                f"          runbook: {RUNBOOK}",
            ]
        lines += [f"      # {r.name}: off ({r.toggle}=false)" for r in rules if r not in active]
    return "\n".join(lines) + "\n"


def render_scrape_config(settings: Any) -> str:
    """prometheus.yml for docker-compose.yml: both API replicas, both flow processes, and the rules."""
    interval = _duration(settings.METRICS_SCRAPE_INTERVAL_SECONDS)
    return f"""\
# Prometheus for docker-compose.yml, rendered by `tickcast alerts render` (METRICS_SCRAPE_INTERVAL_SECONDS).
global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
rule_files:
  - /etc/prometheus/{RULES_FILE}
scrape_configs:
  - job_name: tickcast-api
    metrics_path: /metrics
    dns_sd_configs:
      - names: [api]
        type: A
        port: 8000
  - job_name: tickcast-flow
    static_configs:
      - targets: ["flow-0:9100", "flow-1:9100"]
"""


def write_files(settings: Any, out_dir: Path) -> dict[str, bool]:
    """Write both files into `out_dir`; returns {file name: changed}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = {}
    for name, text in ((RULES_FILE, render_rules(settings)), (SCRAPE_FILE, render_scrape_config(settings))):
        path = out_dir / name
        old = path.read_text() if path.exists() else None
        changed[name] = old != text
        if changed[name]:
            path.write_text(text)
    return changed
