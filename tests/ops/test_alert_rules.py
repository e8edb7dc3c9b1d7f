"""Alert rules (issue 17): the shipped files are the default rendering of the settings, the
rules pass `promtool check rules` and their unit tests (`promtool test rules`), toggles and
thresholds reach the rules, and every rule reads a metric the system exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

import api.app  # noqa: F401 - registers every metric of the API and the flow
from tests.ops.promql import exported_names, metric_names
from tickcast.alerts import RULES_FILE, SCRAPE_FILE, render_rules, render_scrape_config
from tickcast.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "docker" / "prometheus"


def promtool() -> str:
    """Debian's promtool, installed by scripts/ensure-prometheus.sh when missing."""
    if shutil.which("promtool") is None:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "ensure-prometheus.sh")], capture_output=True, text=True)
        assert proc.returncode == 0 and shutil.which("promtool"), f"promtool is needed:\n{proc.stderr[-2000:]}"
    return str(shutil.which("promtool"))


def _settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def test_shipped_files_are_the_default_rendering() -> None:
    assert (PROM_DIR / RULES_FILE).read_text() == render_rules(_settings()), "run `tickcast alerts render`"
    assert (PROM_DIR / SCRAPE_FILE).read_text() == render_scrape_config(_settings())


def test_promtool_checks_and_unit_tests_pass() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(PROM_DIR / RULES_FILE)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([tool, "test", "rules", str(PROM_DIR / "alerts.test.yml")], capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    tested = {t["name"] for t in yaml.safe_load((PROM_DIR / "alerts.test.yml").read_text())["tests"]}
    assert tested == _alerts(render_rules(_settings())).keys()  # every rule has its test


def _alerts(text: str) -> dict[str, dict[str, object]]:
    return {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}


def test_toggles_and_thresholds_reach_the_rules(tmp_path: Path) -> None:
    text = render_rules(
        _settings(
            METRICS_ALERT_FLOW_LAG=False,
            ACCURACY_WARNING=0.6,
            ACCURACY_GOOD=0.8,
            METRICS_ALERT_FLOW_LAG_SECONDS=30,
            METRICS_ALERT_JOIN_MISS_RATIO=0.25,
            METRICS_ALERT_FOR_SECONDS=90,
        )
    )
    rules = _alerts(text)
    assert "TickcastFlowLag" not in rules and "# TickcastFlowLag: off (METRICS_ALERT_FLOW_LAG=false)" in text
    assert rules["TickcastAccuracyCritical"]["expr"] == "ml_accuracy < 60"  # seed 004 threshold, from ACCURACY_WARNING
    assert rules["TickcastAccuracyCritical"]["for"] == "90s"
    assert str(rules["TickcastSentimentJoinMisses"]["expr"]).endswith("> 0.25")
    everything_off = render_rules(_settings(**{name: False for name in Settings.model_fields if _is_toggle(name)}))
    assert _alerts(everything_off) == {}
    for name, body in (("some.yml", text), ("none.yml", everything_off)):
        (tmp_path / name).write_text(body)
        check = subprocess.run([promtool(), "check", "rules", str(tmp_path / name)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def _is_toggle(name: str) -> bool:
    return name.startswith("METRICS_ALERT_") and isinstance(Settings.model_fields[name].default, bool)


def test_every_rule_reads_an_exported_metric() -> None:
    exported = exported_names() | {"up"}  # `up` is Prometheus' own
    for name, rule in _alerts(render_rules(_settings())).items():
        used = metric_names(str(rule["expr"]))
        assert used and used <= exported, f"{name} reads {sorted(used - exported)}, which nothing exports"
