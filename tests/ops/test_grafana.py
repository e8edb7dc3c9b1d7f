"""The Grafana board and its provisioning (issue 17): every panel's query names a metric the
system exports, and the provisioning files are well-formed and point at the right places."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import api.app  # noqa: F401 - registers every metric of the API and the flow
from tests.ops.promql import exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def test_every_panel_query_names_an_exported_metric() -> None:
    exported = exported_names()
    boards = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert boards
    queries = 0
    for board in boards:
        dashboard = json.loads(board.read_text())
        ids = [p["id"] for p in _panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{board.name}: duplicate panel ids"
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                used = metric_names(target["expr"])
                assert used, f"{panel['title']}: no metric in {target['expr']!r}"
                assert used <= exported, f"{panel['title']} queries {sorted(used - exported)}, which nothing exports"
                assert target["datasource"]["uid"] == "tickcast-prometheus"
                queries += 1
    assert queries >= 30
    titles = " ".join(p["title"] for p in _panels(json.loads((GRAFANA / "dashboards" / "tickcast.json").read_text())))
    for row in ("Ingest", "Join", "Inference", "Calibration", "Accuracy", "Jobs", "Trading"):
        assert row in titles


def test_provisioning_points_at_the_prometheus_service_and_the_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["./docker/grafana/provisioning"] == "/etc/grafana/provisioning"
    dash_mount = mounts["./docker/grafana/dashboards"]

    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (prom,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prom["uid"] == "tickcast-prometheus" and prom["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"] and "9090:9090" in compose["services"]["prometheus"]["ports"]

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tickcast.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == dash_mount

    prom_mounts = {
        v.split(":")[0]: v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./")
    }
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    (rule_file,) = scrape["rule_files"]
    assert prom_mounts["./docker/prometheus/alerts.yml"] == rule_file
    assert prom_mounts["./docker/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for mount in (*mounts, *prom_mounts):
        assert (ROOT / mount).exists(), mount


def test_trading_row_shows_every_trading_metric() -> None:
    """The Trading row (issue 16): equity, positions, guards, fills, refusals, fees, the feed's
    age and the exchange — every trading_* metric the flow exports is on the board."""
    dashboard = json.loads((GRAFANA / "dashboards" / "tickcast.json").read_text())
    panels = _panels(dashboard)
    assert not [p["title"] for p in panels if "reserved" in p["title"].lower()]
    row = next(i for i, p in enumerate(dashboard["panels"]) if p["type"] == "row" and p["title"] == "Trading")
    trading_panels = dashboard["panels"][row + 1 :]
    used = {name for p in trading_panels for t in p.get("targets", []) for name in metric_names(t["expr"])}
    wanted = {n for n in exported_names() if n.startswith("trading_") and not n.endswith("_created")}
    assert wanted and wanted <= used, f"not on the Trading row: {sorted(wanted - used)}"
