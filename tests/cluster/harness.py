"""Run `tickcast flow` as a cluster of real processes on loopback, and dump its tables.

Each process is `python -m tickcast.app.cli flow -i k -a "127.0.0.1:p0;127.0.0.1:p1"` (a
single process gets no -i/-a) on the real broker, with a chdb store that only process 0
opens. A chdb directory belongs to one process at a time, so the tables are read after the
cluster has stopped, from a fresh process (`query_in_subprocess`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dataflows.kafka.admin import ensure_topics
from dataflows.kafka.produce import produce_records
from tickcast.bus import STREAMS

ROOT = Path(__file__).resolve().parents[2]
START = 1_763_683_200_000
PARTITIONS = 4

# Each table's natural key and the columns compared (the operational ones are left out:
# predictions.latency_ms is wall-clock time; rejected_records.received_ts too).
TABLES: dict[str, tuple[str, str]] = {
    "sentiment_ticks": ("symbol, ts, id", "*"),
    "sentiment_bars": ("symbol, step, bar_end", "*"),
    "candles": ("symbol, interval, open_time", "*"),
    "features": ("symbol, interval, close_time", "*"),
    "labels": ("symbol, interval, horizon, close_time", "*"),
    "predictions": ("symbol, interval, horizon, close_time, model_version", "* EXCEPT (latency_ms)"),
    "rejected_records": ("source, id", "source, id, reason, provider, payload"),
}


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def make_topics(broker: str, partitions: int = PARTITIONS) -> dict[str, str]:
    """Fresh input topics with `partitions` each, and 1-partition output topics."""
    s = uuid.uuid4().hex[:8]
    names = {
        "TICKCAST_TOPIC_TICKS": f"ticks-{s}",
        "TICKCAST_TOPIC_CANDLES": f"candles-{s}",
        **{f"TICKCAST_TOPIC_{stream.upper()}": f"{stream}-{s}" for stream in STREAMS},  # one per live stream
    }
    inputs = {names["TICKCAST_TOPIC_TICKS"]: partitions, names["TICKCAST_TOPIC_CANDLES"]: partitions}
    ensure_topics(broker, {**inputs, **{names[f"TICKCAST_TOPIC_{stream.upper()}"]: 1 for stream in STREAMS}})
    return names


def produce(broker: str, topics: dict[str, str], records: Iterable[dict[str, Any]]) -> None:
    """Ticks and candles to their topics, keyed by symbol, stamped with their ingest_ts."""
    records = list(records)
    produce_records(broker, topics["TICKCAST_TOPIC_CANDLES"], [r for r in records if "score" not in r])
    produce_records(broker, topics["TICKCAST_TOPIC_TICKS"], [r for r in records if "score" in r])


def flow_env(broker: str, topics: dict[str, str], **extra: str) -> dict[str, str]:
    """Settings that make a live run deterministic: no wall-clock join timeout within a test,
    and a Kafka pair that only runs one topic ahead after 5 s without messages from the other."""
    return {
        **os.environ,
        **topics,
        "TICKCAST_KAFKA_BOOTSTRAP": broker,
        "TICKCAST_LOG_LEVEL": "INFO",
        "TICKCAST_SNAPSHOT_SECONDS": "0.5",
        "TICKCAST_WRITE_FLUSH_MS": "100",
        "FEATURE_JOIN_TIMEOUT_MS": "3600000",
        "TICKCAST_KAFKA_IDLE_RELEASE_MS": "5000",
        **extra,
    }


@dataclass
class FlowCluster:
    """`processes` `tickcast flow` processes sharing one recovery directory and one chdb store."""

    workdir: Path
    env: dict[str, str]
    processes: int = 2
    store_url: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store_url = self.store_url or f"chdb://{self.workdir / 'ch'}"
        # Cluster and metrics ports taken together, so no two of them are the same.
        ports = free_ports(2 * self.processes)
        self.addresses = ";".join(f"127.0.0.1:{port}" for port in ports[: self.processes])
        self.metrics_pool = ports[self.processes :]

    def start(self) -> FlowCluster:
        self.procs, self.metrics_ports = [], []
        for k in range(self.processes):
            port = self.metrics_pool[k]
            cluster = ["-i", str(k), "-a", self.addresses] if self.processes > 1 else []
            log = self.workdir / f"flow-{k}-{len(self.logs)}.log"
            self.logs.append(log)
            args = [
                sys.executable,
                "-m",
                "tickcast.app.cli",
                "flow",
                "--store",
                self.store_url,
                "--model-dir",
                str(self.workdir / "models"),
                "-r",
                str(self.workdir / "recovery"),
                *cluster,
            ]
            env = {**self.env, "TICKCAST_FLOW_METRICS_PORT": str(port)}
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            self.procs.append(proc)
            self.metrics_ports.append(port)
        return self

    def metric(self, name: str, label: str | None = None, *, process: int | None = None) -> float:
        """The sum over the processes (or one) of a counter (all its series, or those with `label`)."""
        total = 0.0
        pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", re.M)
        for k, port in enumerate(self.metrics_ports):
            if process is not None and k != process:
                continue
            self.check_alive(k)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue  # not serving yet
            for labels, value in pattern.findall(text):
                if label is None or label in labels:
                    total += float(value)
        return total

    def check_alive(self, k: int) -> None:
        if self.procs[k].poll() is not None:
            raise AssertionError(f"flow process {k} exited with {self.procs[k].returncode}:\n{self.tail(k)}")

    def tail(self, k: int, n: int = 3000) -> str:
        return self.logs[-self.processes + k].read_text(errors="replace")[-n:]

    def wait_for(self, name: str, at_least: float, *, label: str | None = None, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while (value := self.metric(name, label)) < at_least:
            if time.monotonic() > deadline:
                logs = "\n".join(self.tail(k) for k in range(self.processes))
                raise AssertionError(f"{name} reached {value} of {at_least} in {timeout} s\n{logs}")
            time.sleep(0.2)
        return value

    def ticks_handled(self) -> float:
        """Well-formed ticks the cluster has accepted or refused (duplicate, late, provider disabled)."""
        refused = sum(
            self.metric("sentiment_ingest_errors_total", f'reason="{why}"')
            for why in ("duplicate", "late", "provider_disabled")
        )
        return self.metric("sentiment_ingest_total") + refused

    def wait_for_input(self, good_candles: int, good_ticks: int, timeout: float = 240) -> None:
        """Until every well-formed candle is ingested and every well-formed tick handled (the
        last ones wait for the Kafka pair's idle release), then until the writes settle."""
        self.wait_for("candles_ingest_total", good_candles, timeout=timeout)
        deadline = time.monotonic() + timeout
        while (handled := self.ticks_handled()) < good_ticks:
            if time.monotonic() > deadline:
                raise AssertionError(f"{handled} of {good_ticks} ticks handled in {timeout} s")
            time.sleep(0.2)
        self.wait_quiet()

    def wait_input_consumed(self, partitions: int = PARTITIONS, timeout: float = 240) -> None:
        """Until this run's logs say both topics of every partition are caught up and idle (the
        Kafka pair source then has released everything), then until the writes settle. For a
        resumed cluster, whose counters start again at zero."""
        pattern = re.compile(r"kafka:(p\d+): (\S+) (caught up and idle|delivering again)")
        deadline = time.monotonic() + timeout
        while True:
            state: dict[tuple[str, str], str] = {}
            for log in self.logs[-self.processes :]:
                for part, topic, what in pattern.findall(log.read_text(errors="replace")):
                    state[(part, topic)] = what
            idle = [key for key, what in state.items() if what == "caught up and idle"]
            if len(idle) == 2 * partitions:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"only {sorted(idle)} caught up after {timeout} s")
            for k in range(self.processes):
                self.check_alive(k)
            time.sleep(0.3)
        self.wait_quiet()

    def wait_quiet(self, quiet_s: float = 3.0, timeout: float = 180) -> None:
        """Until rows have been written and then none for `quiet_s`."""
        deadline = time.monotonic() + timeout
        self.wait_for("store_rows_written_total", 1, timeout=timeout)
        last, since = -1.0, time.monotonic()
        while time.monotonic() - since < quiet_s:
            written = self.metric("store_rows_written_total")
            if written != last:
                last, since = written, time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster kept writing for {timeout} s")
            time.sleep(0.2)

    def committed_epoch(self) -> int:
        """The epoch a resume would start from: the oldest commit over the recovery partitions
        (0 while any partition has none)."""
        epochs = []
        for part in sorted((self.workdir / "recovery").glob("part-*.sqlite3")):
            with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5)) as db:
                row = db.execute("SELECT max(commit_epoch) FROM commits").fetchone()
            epochs.append(int(row[0] or 0))
        return min(epochs, default=0)

    def kill(self, k: int) -> None:
        """SIGKILL process k: a crash, no flush."""
        os.killpg(self.procs[k].pid, signal.SIGKILL)
        self.procs[k].wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def dump(store_url: str, tables: dict[str, tuple[str, str]] = TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows (FINAL, in natural-key order), read by a fresh process."""
    queries = {
        table: f"SELECT {cols} FROM {{db}}.{table} FINAL ORDER BY {key}" for table, (key, cols) in tables.items()
    }
    code = (
        "import json,sys; from tickcast.store import Store; s=Store(sys.argv[1]); "
        "q=json.loads(sys.argv[2]); print(json.dumps({t: s.rows(sql) for t, sql in q.items()}, default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, store_url, json.dumps(queries)], cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode:
        raise AssertionError(f"dumping {store_url} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def differences(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Per table, a short account of how two dumps differ (empty when row-for-row equal)."""
    out = {}
    for table in a:
        rows_a, rows_b = a[table], b[table]
        if rows_a == rows_b:
            continue
        differing = [i for i, (x, y) in enumerate(zip(rows_a, rows_b, strict=False)) if x != y]
        where = ""
        if differing:
            x, y = rows_a[differing[0]], rows_b[differing[0]]
            cols = {c: (x[c], y.get(c)) for c in x if x[c] != y.get(c)}
            key = {c: x[c] for c in list(x)[:4]}
            where = f"; {len(differing)} rows differ, the first at {key}: {cols}"
        only = _only_in(rows_a, rows_b)
        out[table] = (
            f"{len(rows_a)} vs {len(rows_b)} rows{where}; only in the first: {only[0]}; only in the second: {only[1]}"
        )
    return out


def _only_in(a: list[dict[str, Any]], b: list[dict[str, Any]], n: int = 3) -> tuple[list[Any], list[Any]]:
    """A few rows of each side that the other lacks."""
    sa = {json.dumps(r, sort_keys=True, default=str) for r in a}
    sb = {json.dumps(r, sort_keys=True, default=str) for r in b}
    return sorted(sa - sb)[:n], sorted(sb - sa)[:n]
