"""The shard step's outputs as digests, to check a change is bit-identical (issue 21 part 1).

Runs `ShardLogic` over a simulated stretch fed through the real decode step: ticks (some late,
some duplicated), candle bursts (some repeated, out of order, of another interval, split over
two batches), live and replay configurations, with and without recovery, one without
sentiment features. Hashes every activation's items (`on_batch`, `on_notify`, `on_eof`), the
snapshot after each and `notify_at`, pickled, so a row's key order counts too. Wall clock is a
fake one (join timeouts happen at the same records every run). Run it on each tree and diff:

    PYTHONHASHSEED=0 PYTHONPATH=OLD python bench/shard_identity.py > old.txt
    PYTHONHASHSEED=0 PYTHONPATH=NEW python bench/shard_identity.py > new.txt && diff old.txt new.txt
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from inference import GRACE, START, tick  # noqa: E402 - the bench's own record shapes

import dataflows.market_state as market_state  # noqa: E402
import dataflows.symbol_logic as symbol_logic  # noqa: E402
from dataflows.decode import DecodeConfig, DecodeLogic  # noqa: E402
from dataflows.items import ShardWork  # noqa: E402
from dataflows.signals import FlowOptions, symbol_config  # noqa: E402
from dataflows.simulator import flat_candle  # noqa: E402
from tickcast.settings import load_settings  # noqa: E402

CLOCK = [1_800_000_000.0]
symbol_logic.time = types.SimpleNamespace(time=lambda: CLOCK[0], perf_counter=time.perf_counter)  # type: ignore[assignment]
_market_init = market_state.MarketState.__init__


def _zeroed_scratch(self: market_state.MarketState, *args: Any, **kwargs: Any) -> None:
    _market_init(self, *args, **kwargs)
    self._label_close[:] = 0.0  # np.empty scratch: its bytes would make the snapshots differ run to run


market_state.MarketState.__init__ = _zeroed_scratch  # type: ignore[method-assign]


def run(live: bool, recovery: bool, seed: int, n_symbols: int, minutes: int, include: bool = True) -> str:
    rng = np.random.default_rng(seed)
    settings = load_settings(FEATURE_JOIN_GRACE_MS=GRACE, TRAINING_INCLUDE_SENTIMENT=include)
    config = symbol_config(settings, FlowOptions(live=live, recovery=recovery))
    decode = DecodeLogic(DecodeConfig(wall_clock=live, recovery=False), None)
    shards: dict[str, symbol_logic.ShardLogic] = {}
    symbols = [f"S{i:04d}USDT" for i in range(n_symbols)]
    prices = {s: 100 + 10 * rng.random() for s in symbols}
    digest = hashlib.sha256()
    count = 0

    def add(x: Any) -> None:
        digest.update(pickle.dumps(x, protocol=5))

    def feed(records: list[dict[str, Any]]) -> None:
        nonlocal count
        items, _ = decode.on_batch([[("bench", r, r["ingest_ts"]) for r in records]])
        for item in items:
            if not isinstance(item, ShardWork):
                add(item)
                continue
            logic = shards.get(item.shard) or shards.setdefault(item.shard, symbol_logic.ShardLogic(config, None))
            result = logic.on_batch([item.work])
            count += len(result[0])
            add(result)
            add(logic.snapshot())
            add("now" if logic.later else logic.notify_at())  # "now" is datetime.now()
        for name in sorted(shards):
            logic = shards[name]
            if logic.later or rng.random() < 0.3:
                result = logic.on_notify()
                count += len(result[0])
                add(result)
                add(logic.snapshot())

    sent: list[dict[str, Any]] = []
    for m in range(minutes):
        close = START + (m + 1) * 60_000
        CLOCK[0] += float(rng.choice([0.5, 1.0, 20.0]))  # now and then past the join timeout
        records = []
        for s in symbols:
            for _ in range(int(rng.integers(0, 4))):
                ts = close - int(rng.integers(1000, 60000))
                ingest = ts + int(rng.integers(10, 3000 if rng.random() > 0.05 else 200_000))  # some late
                sent.append(tick(s, ts, ingest, float(rng.uniform(-1, 1))))
                records.append(sent[-1])
            if sent and rng.random() < 0.05:  # a duplicate id
                records.append({**sent[int(rng.integers(len(sent)))], "ingest_ts": close - 20_000})
        records.sort(key=lambda r: r["ingest_ts"])
        feed(records)
        records = []
        for s in symbols:
            prices[s] *= float(np.exp(rng.normal(0, 0.002)))
            r = rng.random()
            if r < 0.85:
                records.append(flat_candle(s, close, prices[s], volume=float(rng.uniform(1, 20))))
                if rng.random() < 0.05:
                    records.append(dict(records[-1]))  # the same candle again
            if r > 0.97 and m > 2:
                records.append(flat_candle(s, close - 120_000, prices[s]))  # out of order or a replay
            if 0.9 < r < 0.92:
                records.append({**flat_candle(s, close, prices[s]), "interval": "5m", "open_time": close - 300_000})
            if rng.random() < 0.7:
                ingest = close + GRACE + int(rng.integers(1, 500))
                records.append(tick(s, close + int(rng.integers(100, 2500)), ingest, 0.1))
        if rng.random() < 0.3:  # the burst in two batches
            feed(records[: len(records) // 2])
            feed(records[len(records) // 2 :])
        else:
            feed(records)
    for name in sorted(shards):
        add(shards[name].on_eof())
    return f"live={live} recovery={recovery} seed={seed} include={include}: {count} items, digest {digest.hexdigest()}"


def main() -> None:
    for live, recovery, seed in (
        (True, True, 1),
        (True, False, 2),
        (False, True, 3),
        (False, False, 4),
        (True, True, 5),
    ):
        print(run(live, recovery, seed, 120, 45), flush=True)
    print(run(True, False, 6, 60, 20, include=False), flush=True)


if __name__ == "__main__":
    main()
