"""docker-compose.yml describes the flow cluster the tests run: no Docker engine here, so it
is kept correct by reading it — process ids, addresses, the shared recovery store, the
topics' partition counts and the Prometheus targets must agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tickcast.app.cli import _host_port

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _flow_args(service: dict[str, Any]) -> dict[str, str]:
    command = service["command"]
    assert command[0] == "flow", command
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    return {"-i": flags["-i"], "-a": flags["-a"], "-r": flags["-r"]}


def test_the_flow_services_form_one_cluster() -> None:
    services = _compose()["services"]
    flows = {name: s for name, s in services.items() if s.get("command", [None])[0] == "flow"}
    assert len(flows) >= 2, "the flow runs as a cluster of processes"
    args = {name: _flow_args(s) for name, s in flows.items()}

    addresses = {a["-a"] for a in args.values()}
    assert len(addresses) == 1, f"every process must get the same -a list: {addresses}"
    cluster = addresses.pop().split(";")
    assert all(_host_port(a) for a in cluster)
    assert sorted(int(a["-i"]) for a in args.values()) == list(range(len(cluster)))
    for name, a in args.items():
        host, _, port = cluster[int(a["-i"])].rpartition(":")
        assert host == name, f"{name} is -i {a['-i']}, but that address is {host}"
        assert port == "2101"

    # One recovery store, on one volume shared by every process, in a directory inside it.
    assert len({a["-r"] for a in args.values()}) == 1
    recovery = next(iter(args.values()))["-r"]
    for name, service in flows.items():
        mounts = dict(v.split(":")[::-1] for v in service["volumes"])
        mount = next(m for m in mounts if recovery.startswith(m + "/"))
        assert mounts[mount] == "recovery", f"{name}: {recovery} must be on the shared 'recovery' volume"
        assert recovery != mount, "a directory inside the volume, not its mount point"
        assert service["environment"]["TICKCAST_CLICKHOUSE_URL"].startswith("http"), "a ClickHouse server store"
        assert service["restart"] == "unless-stopped"  # a process that loses its peer exits; both come back


def test_input_topics_have_equal_partitions_enough_for_every_process() -> None:
    compose = _compose()
    services = compose["services"]
    processes = sum(1 for s in services.values() if s.get("command", [None])[0] == "flow")
    script = " ".join(services["kafka-init"]["command"])
    topics = re.search(r"for t in ([^;]+?); do", script)
    partitions = re.search(r"--partitions (\d+)", script)
    assert topics and partitions
    created = topics.group(1).split()
    env = compose["x-tickcast-env"]
    for name in ("sentiment.ticks", "market.candles"):  # the settings' defaults; the env does not override them
        assert name in created
    assert "TICKCAST_TOPIC_TICKS" not in env and "TICKCAST_TOPIC_CANDLES" not in env
    # One command creates both input topics: the same partition count, at least one per process.
    assert int(partitions.group(1)) >= processes
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == int(partitions.group(1))


def test_every_live_stream_topic_is_created() -> None:
    """The broker refuses auto-creation (KAFKA_AUTO_CREATE_TOPICS_ENABLE=false): kafka-init
    creates each live stream's topic (Settings.live_topics), which the replicas follow."""
    from tickcast.settings import Settings

    compose = _compose()
    script = " ".join(compose["services"]["kafka-init"]["command"])
    topics = re.search(r"for t in ([^;]+?); do", script)
    assert topics
    env = compose["x-tickcast-env"]
    assert not [k for k in env if k.startswith("TICKCAST_TOPIC_")]  # the defaults are the names created
    assert set(Settings().live_topics.values()) <= set(topics.group(1).split())


def test_prometheus_scrapes_every_flow_process() -> None:
    services = _compose()["services"]
    flows = sorted(name for name, s in services.items() if s.get("command", [None])[0] == "flow")
    scrape = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "tickcast-flow"]
    targets = sorted(t for c in job["static_configs"] for t in c["targets"])
    assert targets == [f"{name}:9100" for name in flows]
