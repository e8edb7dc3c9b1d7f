"""Run the same input through the replay paths and compare every table, row for row.

Each path is the real `tickcast replay` command in a process of its own, with its own
chdb directory (one process per chdb path): the per-record path (`TICKCAST_REPLAY_BATCH=1`),
file replays in batches, a Kafka replay over several partitions, and a Kafka replay that is
killed with SIGKILL and resumed from its recovery store. `dump_tables` reads a finished
store in a fresh process into Parquet files; `load_tables` / `differences` compare them.

Also used by `bench/kill_loop.py`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
START = 1_763_683_200_000
# The tables a replay writes (`rejected_records` rows name their source, which differs between
# a file and a Kafka replay: they are compared as the multiset of their reasons instead).
TABLES = (
    "sentiment_ticks",
    "candles",
    "sentiment_bars",
    "features",
    "labels",
    "predictions",
    "calibration_windows",
    "drift_events",
)
OPERATIONAL = ("latency_ms",)  # predictions.latency_ms: the inference time of a batch, not a result
LONG_SYMBOL = "LONGUSDT"


def write_dataset(out: Path, *, symbols: int = 20, hours: float = 24.0, long_days: float = 7.0, seed: int = 7) -> int:
    """`symbols` × `hours` from the simulator plus one more symbol over `long_days`, with a few
    duplicate and late ticks; JSONL files as `tickcast simulate` writes them. Returns the
    number of records."""
    from dataflows.simulator import SimConfig, generate_labeled

    out.mkdir(parents=True, exist_ok=True)
    wide = SimConfig(symbols=symbols, hours=hours, seed=seed, start_ms=START, duplicate_rate=0.01, late_rate=0.005)
    long = SimConfig(symbols=1, hours=24 * long_days, seed=seed + 1, start_ms=START, duplicate_rate=0.01)
    records = [r for r, _ in generate_labeled(wide)]
    for r, _ in generate_labeled(long):
        r = dict(r, symbol=LONG_SYMBOL)
        if "id" in r:
            r["id"] = f"long-{r['id']}"
        records.append(r)
    records.sort(key=lambda r: r["ingest_ts"])  # one ingest-ordered stream per file, as a recorder writes
    ticks = b"".join(orjson.dumps(r) + b"\n" for r in records if "score" in r)
    candles = b"".join(orjson.dumps(r) + b"\n" for r in records if "score" not in r)
    (out / "ticks.jsonl").write_bytes(ticks)
    (out / "candles.jsonl").write_bytes(candles)
    return len(records)


def train_model(model_dir: Path) -> str:
    """Register and promote a model trained on synthetic rows (features ~ N(0, 1)).

    On the simulator's features it is badly calibrated and every feature looks drifted
    from its training mean, so the replays raise calibration drift, recommendations,
    accuracy alarms and feature drift: sequential state the windows must reproduce."""
    from models.registry import ModelRegistry
    from models.training import Gates
    from models.training import train_model as fit
    from tickcast.features import MARKET_FEATURES, SENTIMENT_FEATURES

    names = list(MARKET_FEATURES) + list(SENTIMENT_FEATURES)
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=(n, len(names)))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, names.index("sent_ema_15m")]
    df = pd.DataFrame(x, columns=names)
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df["symbol"] = "S"
    df["close_time"] = START - (n - np.arange(n)) * 60_000
    result = fit(df, feature_names=names, gates=Gates(0.5, 0.3), ablation=False)
    registry = ModelRegistry(model_dir)
    version = registry.register(result)
    registry.promote(version, cooldown_s=0, force=True)
    return version


def produce_dataset(broker: str, data: Path, *, partitions: int, suffix: str) -> dict[str, str]:
    """The dataset's records into two new topics of `partitions` partitions (keyed by symbol,
    stamped with ingest_ts); returns the topic settings."""
    from dataflows.kafka.admin import ensure_topics
    from dataflows.kafka.produce import produce_records

    topics = {"TICKCAST_TOPIC_TICKS": f"ticks-{suffix}", "TICKCAST_TOPIC_CANDLES": f"candles-{suffix}"}
    ensure_topics(broker, {t: partitions for t in topics.values()})
    for name, topic in (("candles", topics["TICKCAST_TOPIC_CANDLES"]), ("ticks", topics["TICKCAST_TOPIC_TICKS"])):
        lines = (data / f"{name}.jsonl").read_bytes().splitlines()
        produce_records(broker, topic, [orjson.loads(line) for line in lines if line.strip()])
    return topics


def replay_command(
    store: Path, *, kafka: bool = False, data: Path | None = None, recovery: Path | None = None
) -> list[str]:
    args = [sys.executable, "-m", "tickcast.app.cli", "replay", "--store", f"chdb://{store}", "--no-progress"]
    args += ["--kafka"] if kafka else ["--input", str(data)]
    if recovery is not None:
        args += ["--recovery-dir", str(recovery)]
    return args


def environment(model_dir: Path, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKCAST_")}
    env.update(MODEL_STORE_DIR=str(model_dir), TICKCAST_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    env.update({k: str(v) for k, v in settings.items()})
    return env


@dataclass
class Job:
    """A replay running in a process of its own."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def start(self) -> Job:
        self.started = time.monotonic()
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        return self

    def wait(self) -> Job:
        assert self.proc is not None
        _, status, usage = os.wait4(self.proc.pid, 0)
        code = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.seconds = time.monotonic() - self.started
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}: {self.log.read_text()[-3000:]}")
        return self


@dataclass
class KillFigures:
    kills: int
    runs: int
    seconds: float
    kill_after_s: list[float]  # seconds from a run's start to its SIGKILL


def committed_epoch(recovery: Path) -> int | None:
    """The last epoch the flow committed to its recovery store (-1 before the first); read-only,
    beside the running flow. None: not readable right now (being written, or a killed run's
    journal not rolled back yet), ask again later."""
    import sqlite3

    path = recovery / "part-0.sqlite3"
    if not path.exists():
        return -1
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2) as con:
            row = con.execute("SELECT max(commit_epoch) FROM commits").fetchone()
    except sqlite3.Error:
        return None
    return -1 if row is None or row[0] is None else int(row[0])


_INPUT_SNAPSHOTS = """
WITH c AS (SELECT MAX(commit_epoch) AS e FROM commits),
m AS (SELECT step_id, state_key, MAX(snap_epoch) AS snap_epoch FROM snaps, c
      WHERE snap_epoch <= c.e AND step_id LIKE '%.input_%' GROUP BY step_id, state_key)
SELECT ser_change FROM snaps JOIN m USING (step_id, state_key, snap_epoch)
"""


def committed_read(recovery: Path) -> int | None:
    """How far the committed snapshots of the flow's inputs have read: the sum of the Kafka
    offsets they hold (a partition's next offset) or of the file records emitted; 0 before
    the first commit. None: not readable right now. An epoch can commit before a source has read anything (the consumer
    is still fetching), so epochs alone do not show that a run made progress."""
    import pickle
    import sqlite3

    path = recovery / "part-0.sqlite3"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2) as con:
            rows = con.execute(_INPUT_SNAPSHOTS).fetchall()
    except sqlite3.Error:
        return None
    total = 0
    for (ser,) in rows:
        state = pickle.loads(ser) if ser else None  # Kafka: {topic: next offset}; files: records emitted
        if isinstance(state, dict):
            total += sum(v for v in state.values() if isinstance(v, int) and v > 0)
        elif isinstance(state, int) and state > 0:
            total += state
    return total


def epoch_before_run(recovery: Path) -> int | None:
    """The epoch committed before a run, read before it starts; None when the store stays
    unreadable (a read-only reader cannot roll back a killed run's hot journal): the run
    itself rolls it back, and its first readable value is then the one before it."""
    for _ in range(25):
        epoch = committed_epoch(recovery)
        if epoch is not None:
            return epoch
        time.sleep(0.02)
    return None


class RunWatch:
    """What one run has committed to the recovery store since it started, for a kill loop
    that kills a run only after it saved progress of its own. Made before the run starts.
    `need_read`: the run's committed input offsets must also have moved (an epoch can commit
    before a source has read anything)."""

    def __init__(self, recovery: Path, *, need_read: bool = True) -> None:
        self.recovery = recovery
        self.need_read = need_read
        self.before = epoch_before_run(recovery)
        self.read_before = committed_read(recovery) if self.before is not None and need_read else None

    def saved(self, epochs: int) -> bool:
        """Whether the run has committed `epochs` epochs (and, with `need_read`, input) of its own."""
        now = committed_epoch(self.recovery)
        if self.before is None:
            if now is not None:
                # unreadable before the run (a hot journal): its first readable value is the
                # epoch before it, read once the run has rolled the journal back
                self.before = now
                self.read_before = committed_read(self.recovery) if self.need_read else None
            return False
        if self.need_read and self.read_before is None:  # unreadable just then: a later read is stricter
            self.read_before = committed_read(self.recovery)
            return False
        if now is None or now < self.before + epochs:
            return False
        return self.read_before is None or (committed_read(self.recovery) or 0) > self.read_before


def kill_loop(
    args: Sequence[str],
    env: dict[str, str],
    log: Path,
    recovery: Path,
    *,
    kills: int,
    seed: int = 0,
    epochs: int = 2,
    extra_s: float = 1.0,
    timeout: float = 1800,
) -> KillFigures:
    """Run `args` (a replay with its recovery store at `recovery`) and SIGKILL it once the run
    has committed `epochs` epochs of its own and its committed input offsets have moved past
    where it started (so it made progress and saved it), plus a random 0..`extra_s` seconds (so
    it dies at a random point of an epoch), `kills` times; then let the last run finish."""
    rng = random.Random(seed)
    started = time.monotonic()
    delays: list[float] = []
    runs = 0
    with log.open("ab") as fh:
        while True:
            runs += 1
            t0 = time.monotonic()
            watch = RunWatch(recovery)
            proc = subprocess.Popen(list(args), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
            kill_at: float | None = None
            while proc.poll() is None:
                if time.monotonic() - started > timeout:
                    proc.kill()
                    raise TimeoutError(f"the kill loop ran for more than {timeout}s")
                if len(delays) < kills:
                    if kill_at is None and watch.saved(epochs):
                        kill_at = time.monotonic() + rng.uniform(0.0, extra_s)
                    if kill_at is not None and time.monotonic() >= kill_at:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
                        delays.append(time.monotonic() - t0)
                        break
                time.sleep(0.02)
            else:
                if proc.returncode != 0:
                    raise RuntimeError(f"replay run {runs} exited {proc.returncode}: {log.read_text()[-3000:]}")
                return KillFigures(len(delays), runs, time.monotonic() - started, delays)


_DUMP = """
import sys
from pathlib import Path
from tickcast.store import Store
store, out = Store(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for table in sys.argv[3:]:
    store.df("SELECT * FROM {db}." + table + " FINAL").to_parquet(out / (table + ".parquet"))
reasons = store.df("SELECT reason FROM {db}.rejected_records FINAL")["reason"]
reasons.value_counts().rename("n").to_frame().sort_index().to_parquet(out / "rejected_reasons.parquet")
"""


def dump_tables(store: Path, out: Path) -> Path:
    """Every compared table of the chdb store at `store`, read with FINAL in a fresh process."""
    subprocess.run(
        [sys.executable, "-c", _DUMP, f"chdb://{store}", str(out), *TABLES],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
    )
    return out


def load_tables(dumped: Path) -> dict[str, pd.DataFrame]:
    """The dumped tables, operational columns dropped, rows in a canonical order."""
    tables = {}
    for table in TABLES:
        df = pd.read_parquet(dumped / f"{table}.parquet")
        df = df.drop(columns=[c for c in OPERATIONAL if c in df.columns])
        tables[table] = df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)
    tables["rejected_reasons"] = pd.read_parquet(dumped / "rejected_reasons.parquet").sort_index()
    return tables


def differences(reference: dict[str, pd.DataFrame], other: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Table -> what differs (empty when every table is equal row for row, NaN == NaN)."""
    found = {}
    for table, want in reference.items():
        got = other[table]
        try:
            pd.testing.assert_frame_equal(got, want, check_exact=True)
        except AssertionError as exc:
            found[table] = f"{len(got)} rows vs {len(want)}: {str(exc)[:600]}"
    return found


@contextmanager
def lanes(n: int = 2) -> Iterator[list[Job]]:
    """Collect jobs, then run them `n` at a time (the longest first) when the block ends."""
    jobs: list[Job] = []
    yield jobs
    pending = list(jobs)
    running: list[Job] = []
    while pending or running:
        while pending and len(running) < n:
            running.append(pending.pop(0).start())
        time.sleep(0.2)
        for job in list(running):
            assert job.proc is not None
            if os.waitid(os.P_PID, job.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                running.remove(job)
                job.wait()  # reaps it, with its CPU time
