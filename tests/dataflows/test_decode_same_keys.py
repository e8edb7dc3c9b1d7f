"""Dict batches whose records all have the same keys (HTTP's bursts) take shortcuts in the
columnar decode (`tick_decode._same_keys_columns`, `candle_decode.vouched_candles`' key-order
check, `decode._Batch.cuts` when no fast tick came before a candle, the names checked from
the Python columns): the outputs stay those of the per-record path, whatever the key order,
values and record order."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.decode import DecodeConfig
from dataflows.simulator import flat_candle
from tests.dataflows.test_decode_dict_columns import ODD, START, _both, tick

SYMBOLS = [f"S{i:03d}USDT" for i in range(12)] + ["bad symbol", ""]


def _reordered(record: dict[str, Any], order: list[int]) -> dict[str, Any]:
    keys = list(record)
    return {keys[i]: record[keys[i]] for i in order}


@st.composite
def same_keys_batches(draw: st.DrawFn) -> list[tuple[str, Any, int | None]]:
    """Candles then ticks (or ticks first), one key set per kind, keys in any order, now and
    then an odd value under one of the keys (or a key swapped for another, same count)."""
    n = draw(st.integers(1, 12))
    close = START + 60_000 * draw(st.integers(-1, 1))
    candles = [flat_candle(SYMBOLS[i], close, 100.0 + i) for i in range(n)]
    ticks = [tick(draw(st.sampled_from(SYMBOLS)), k) for k in range(draw(st.integers(1, 2 * n)))]
    for records in (candles, ticks):
        keys = list(records[0])
        orders = st.one_of(st.just(list(range(len(keys)))), st.permutations(range(len(keys))))
        one_order = draw(st.booleans())
        order = draw(orders)
        for k, rec in enumerate(records):
            if not one_order:
                order = draw(orders)
            if draw(st.integers(0, 9)) == 0:
                rec[draw(st.sampled_from(keys))] = draw(ODD)
            if draw(st.integers(0, 30)) == 0:  # same number of keys, one other
                rec.pop(draw(st.sampled_from(keys)))
                rec[draw(st.sampled_from(["polarity", "meta", "extra"]))] = 1
            records[k] = _reordered(rec, order) if len(rec) == len(keys) else rec
    if draw(st.booleans()):
        for rec in candles:
            if "ingest_ts" in rec:
                rec["ingest_ts"] = draw(st.sampled_from([None, rec["ingest_ts"]]))
    records = ticks + candles if draw(st.booleans()) else candles + ticks
    if draw(st.booleans()):  # a per-record tick (the simulator's) before the candles
        records.insert(0, tick(SYMBOLS[0], 99))
        sources = ["sim"] + ["http"] * (len(records) - 1)
    else:
        sources = ["http"] * len(records)
    hint = draw(st.sampled_from([None, START + 100]))  # (a source's hint: an int or none)
    return [(s, r, hint) for s, r in zip(sources, records, strict=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(same_keys_batches(), st.sampled_from([DecodeConfig(), DecodeConfig(wall_clock=True, trust={"newsapi": 0.5})]))
def test_same_keys_batches_decode_as_the_per_record_path(batch, config: DecodeConfig) -> None:  # noqa: ANN001
    columnar, reference = _both(config, [batch])
    assert columnar == reference


def test_a_burst_with_keys_in_other_orders_decodes_as_the_per_record_path() -> None:
    rng = np.random.default_rng(7)
    candles = [flat_candle(f"S{i:03d}USDT", START, 100.0 + i) for i in range(50)]
    ticks = [tick(f"S{i:03d}USDT", i) for i in range(50)]
    records = [_reordered(r, rng.permutation(len(r)).tolist()) for r in candles + ticks]
    batch = [("http", r, r["ingest_ts"]) for r in records]
    columnar, reference = _both(DecodeConfig(), [batch])
    assert columnar == reference
